//! Subscriptions: those of this host's file (read-only) and of the database. Each reads the
//! events its pattern matches from a queue (or Kafka consumer group) of its own on this
//! host's events connection.

use super::{AppError, AppState, applied, audit, file_defined, now_ms};
use crate::config::SubscriptionConfig;
use crate::store::Documents;
use crate::supervisor::{Desired, Source, UnitStatus};
use crate::web::caller::{Admin, Allowed, Viewer};
use serde::Serialize;
use serde_json::json;

/// How long a change's answer waits for its subscription to leave `starting`.
const SETTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A subscription as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SubscriptionView {
    pub name: String,
    pub source: Source,
    pub subscription: SubscriptionConfig,
    /// Its queue (or Kafka consumer group): `{service}.{chain}.{pattern}`.
    pub queue: String,
    /// Where it reads events: `connection:exchange` of this host's `[events]`.
    pub events: String,
    /// Its queue as an address: `connection:queue`.
    pub address: String,
    /// How it runs on this host (none while it has not been applied yet).
    pub status: Option<UnitStatus>,
    /// Why this host does not run it, for a database subscription it refuses.
    pub refused: Option<String>,
}

fn view_of(
    state: &AppState,
    name: String,
    source: Source,
    subscription: SubscriptionConfig,
    status: Option<UnitStatus>,
    refused: Option<String>,
) -> SubscriptionView {
    let events = &state.supervisor.file().events;
    SubscriptionView {
        address: format!("{}:{}", events.connection, subscription.queue()),
        queue: subscription.queue(),
        events: format!("{}:{}", events.connection, events.exchange),
        name,
        source,
        subscription,
        status,
        refused,
    }
}

async fn views(state: &AppState) -> Result<Vec<SubscriptionView>, AppError> {
    let desired = Desired::load(&state.store, state.supervisor.file()).await?;
    let status = state.supervisor.status().await;
    let mut views: Vec<SubscriptionView> = desired
        .subscriptions
        .into_iter()
        .map(|(name, item)| {
            let status = status.units.iter().find(|u| u.name == name).cloned();
            view_of(state, name, item.source, item.spec, status, None)
        })
        .collect();
    let refused: Vec<_> = desired
        .refused
        .into_iter()
        .filter(|(what, _, _)| *what == "subscription")
        .collect();
    if !refused.is_empty() {
        let docs = state.store.documents(Documents::Subscriptions).await?;
        for (_, name, problem) in refused {
            if let Some(doc) = docs.iter().find(|d| d.name == name)
                && let Ok(spec) = serde_json::from_str::<SubscriptionConfig>(&doc.spec)
            {
                views.push(view_of(state, name, Source::Api, spec, None, Some(problem)));
            }
        }
    }
    Ok(views)
}

async fn view(state: &AppState, name: &str) -> Result<SubscriptionView, AppError> {
    views(state)
        .await?
        .into_iter()
        .find(|v| v.name == name && v.refused.is_none())
        .ok_or_else(|| AppError::NotFound(format!("no subscription named `{name}`")))
}

fn refuse_file_subscription(state: &AppState, name: &str) -> Result<(), AppError> {
    if state
        .supervisor
        .file()
        .subscriptions
        .iter()
        .any(|s| s.name == name)
    {
        return Err(file_defined(state, "subscription", name));
    }
    Ok(())
}

/// Checks a subscription for the database: its shape, its plugins, and that neither its
/// name nor its queue is taken.
async fn check(state: &AppState, subscription: &SubscriptionConfig) -> Result<(), AppError> {
    let desired = Desired::load(&state.store, state.supervisor.file()).await?;
    let events = &state.supervisor.file().events;
    subscription.check("", events, &|name| desired.connections.contains_key(name))?;
    super::routes::check(state, &subscription.route(events)).await?;
    if desired.routes.contains_key(&subscription.name) {
        return Err(AppError::Conflict(format!(
            "a route is named `{}`; routes and subscriptions share names",
            subscription.name
        )));
    }
    let queue = subscription.queue();
    if let Some((other, _)) = desired
        .subscriptions
        .iter()
        .find(|(other, item)| **other != subscription.name && item.spec.queue() == queue)
    {
        return Err(AppError::Conflict(format!(
            "subscription `{other}` reads queue `{queue}` already: the same service, chain and pattern"
        )));
    }
    Ok(())
}

/// Every subscription, with how it runs on this host.
pub async fn list(
    state: &AppState,
    _: &Allowed<Viewer>,
) -> Result<Vec<SubscriptionView>, AppError> {
    views(state).await
}

pub async fn get(
    state: &AppState,
    _: &Allowed<Viewer>,
    name: &str,
) -> Result<SubscriptionView, AppError> {
    view(state, name).await
}

/// Adds a subscription; it runs on every host on this database at once.
pub async fn create(
    state: &AppState,
    who: &Allowed<Admin>,
    subscription: SubscriptionConfig,
) -> Result<SubscriptionView, AppError> {
    refuse_file_subscription(state, &subscription.name)?;
    check(state, &subscription).await?;
    let spec = serde_json::to_string(&subscription).expect("a subscription serialises");
    if !state
        .store
        .create_document(
            Documents::Subscriptions,
            &subscription.name,
            &spec,
            now_ms(),
        )
        .await?
    {
        return Err(AppError::Conflict(format!(
            "a subscription named `{}` exists already",
            subscription.name
        )));
    }
    audit::record(
        state,
        who,
        "subscription.create",
        &subscription.name,
        json!({ "subscription": subscription }),
    )
    .await;
    applied(state).await?;
    state
        .supervisor
        .settled(&subscription.name, SETTLE_WAIT)
        .await;
    view(state, &subscription.name).await
}

/// Replaces a subscription: events in flight finish on the old chain, new ones take the new.
/// A change of service, chain or pattern moves it to a new queue.
pub async fn update(
    state: &AppState,
    who: &Allowed<Admin>,
    name: &str,
    subscription: SubscriptionConfig,
) -> Result<SubscriptionView, AppError> {
    refuse_file_subscription(state, name)?;
    if subscription.name != name {
        return Err(crate::web::error::invalid(
            "name",
            format!(
                "the body names subscription `{}`, the path `{name}`; a subscription cannot be renamed",
                subscription.name
            ),
        ));
    }
    check(state, &subscription).await?;
    let old = view(state, name).await?.subscription;
    let spec = serde_json::to_string(&subscription).expect("a subscription serialises");
    if !state
        .store
        .update_document(Documents::Subscriptions, name, &spec, now_ms())
        .await?
    {
        return Err(AppError::NotFound(format!(
            "no subscription named `{name}`"
        )));
    }
    if old.queue() != subscription.queue() || old.pattern != subscription.pattern {
        unbind(state, &old).await;
    }
    audit::record(
        state,
        who,
        "subscription.update",
        name,
        json!({ "subscription": subscription }),
    )
    .await;
    applied(state).await?;
    state.supervisor.settled(name, SETTLE_WAIT).await;
    view(state, name).await
}

/// Deletes a subscription: it stops taking events and finishes those it holds; its queue is
/// unbound from the events exchange (what it holds stays, to read or purge on the Queues
/// page).
pub async fn delete(state: &AppState, who: &Allowed<Admin>, name: &str) -> Result<(), AppError> {
    refuse_file_subscription(state, name)?;
    let old = view(state, name).await?.subscription;
    if !state
        .store
        .delete_document(Documents::Subscriptions, name)
        .await?
    {
        return Err(AppError::NotFound(format!(
            "no subscription named `{name}`"
        )));
    }
    audit::record(state, who, "subscription.delete", name, json!({})).await;
    applied(state).await?;
    unbind(state, &old).await;
    Ok(())
}

/// Takes `old`'s queue off the events exchange (best effort: a broker that is down keeps the
/// binding, and the queue keeps filling until someone deletes it).
async fn unbind(state: &AppState, old: &SubscriptionConfig) {
    let events = &state.supervisor.file().events;
    let at = crate::broker::Address {
        connection: events.connection.clone(),
        address: events.exchange.clone(),
    };
    let result = match state.supervisor.connections().producer(&at) {
        Ok(producer) => {
            producer
                .transport()
                .unsubscribe(&events.exchange, &old.queue(), &old.pattern)
                .await
        }
        Err(error) => Err(error),
    };
    if let Err(error) = result {
        tracing::warn!(subscription = %old.name, %error, "cannot unbind the subscription's queue");
    }
}
