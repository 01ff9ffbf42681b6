//! What the API shows of each kind of unit beside its head (name, source, status): the only
//! part of a unit's view that differs between kinds (`units` reads, lists and changes them
//! all alike).

use super::units::{Around, Shown, UnitHead};
use crate::config::{DaemonConfig, RouteConfig, SubscriptionConfig};
use serde::Serialize;

/// A route as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RouteView {
    #[serde(flatten)]
    pub head: UnitHead,
    pub route: RouteConfig,
}

impl Shown for RouteConfig {
    type View = RouteView;

    fn view(head: UnitHead, route: Self, _: &Around) -> RouteView {
        RouteView { head, route }
    }

    fn head(view: &RouteView) -> &UnitHead {
        &view.head
    }

    fn spec(view: &RouteView) -> &Self {
        &view.route
    }
}

/// A subscription as the API shows it. Each reads the events its pattern matches from a
/// queue (or Kafka consumer group) of its own on this host's events connection.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SubscriptionView {
    #[serde(flatten)]
    pub head: UnitHead,
    pub subscription: SubscriptionConfig,
    /// Its queue (or Kafka consumer group): `{service}.{chain}.{pattern}`.
    pub queue: String,
    /// Where it reads events: `connection:exchange` of this host's `[events]`.
    pub events: String,
    /// Its queue as an address: `connection:queue`.
    pub address: String,
}

impl Shown for SubscriptionConfig {
    type View = SubscriptionView;

    fn view(head: UnitHead, subscription: Self, around: &Around) -> SubscriptionView {
        let events = around.events;
        SubscriptionView {
            head,
            address: format!("{}:{}", events.connection, subscription.queue()),
            queue: subscription.queue(),
            events: format!("{}:{}", events.connection, events.exchange),
            subscription,
        }
    }

    fn head(view: &SubscriptionView) -> &UnitHead {
        &view.head
    }

    fn spec(view: &SubscriptionView) -> &Self {
        &view.subscription
    }
}

/// A daemon as the API shows it. Each runs a daemon plugin for as long as it is wanted, on
/// one host at a time unless it runs on each.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DaemonView {
    #[serde(flatten)]
    pub head: UnitHead,
    pub daemon: DaemonConfig,
    /// The host that holds its lease (a daemon that runs on one host at a time), while one
    /// does.
    pub runs_on: Option<String>,
}

impl Shown for DaemonConfig {
    type View = DaemonView;

    fn view(head: UnitHead, daemon: Self, around: &Around) -> DaemonView {
        DaemonView {
            runs_on: head
                .refused
                .is_none()
                .then(|| around.runs_on(&head.name))
                .flatten(),
            head,
            daemon,
        }
    }

    fn head(view: &DaemonView) -> &UnitHead {
        &view.head
    }

    fn spec(view: &DaemonView) -> &Self {
        &view.daemon
    }
}
