// The admin UI's one script. It reads only data- attributes, so no value of the host's is
// ever inside a script, and every page works without it (forms post as they are).
//
// - form[data-confirm]: asks before a destructive action, in the words of the attribute.
// - select[data-shows] (the Connections page): only the chosen kind's fields are shown.
// - #live (the Queues page): consumes the queue live, each message as the server takes it
//   (server-sent events), with the CSRF token from the button's data-csrf.
(function () {
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });

  // select[data-shows]: shows only the fieldsets of that class whose data-kind is chosen.
  document.querySelectorAll("select[data-shows]").forEach(function (select) {
    var show = function () {
      document.querySelectorAll("fieldset." + select.dataset.shows).forEach(function (set) {
        set.hidden = set.dataset.kind !== select.value;
      });
    };
    select.addEventListener("change", show);
    show();
  });

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
    source = new EventSource(
      "/queue/live?address=" + encodeURIComponent(button.dataset.address) +
        "&csrf=" + encodeURIComponent(button.dataset.csrf)
    );
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
