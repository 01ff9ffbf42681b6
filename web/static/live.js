// Consume page: shows each message as the server takes it from the queue (server-sent
// events). Without JavaScript the page still peeks and takes through its forms.
(function () {
  var button = document.getElementById("live");
  if (!button || !window.EventSource) return;
  var list = document.getElementById("live-messages");
  var source = null;
  button.hidden = false;
  button.addEventListener("click", function () {
    if (source) {
      source.close();
      source = null;
      button.textContent = "Consume live";
      return;
    }
    source = new EventSource("/queue/live?address=" + encodeURIComponent(button.dataset.address));
    button.textContent = "Stop consuming";
    source.addEventListener("message", function (event) {
      var m = JSON.parse(event.data);
      var item = document.createElement("div");
      item.className = "panel message live";
      var meta = document.createElement("p");
      meta.className = "mono";
      meta.textContent = "id " + m.id + (m.content_type ? " · " + m.content_type : "");
      var payload = document.createElement("pre");
      payload.className = "payload";
      payload.textContent = m.shown;
      item.appendChild(meta);
      item.appendChild(payload);
      list.insertBefore(item, list.firstChild);
    });
    source.addEventListener("error", function () {
      button.textContent = "Consume live (reconnecting)";
    });
  });
})();
