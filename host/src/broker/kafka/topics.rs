//! The topics a Kafka connection creates: its definition's and those its routes use.

use super::*;

/// Creates the topics of connection `name` that are missing, with a client of its own (for
/// `wharf schema apply`).
pub(crate) async fn create_topics(
    name: &str,
    config: &KafkaConfig,
    topics: &[KafkaTopicConfig],
) -> Result<Vec<(String, String)>, BrokerError> {
    let admin: AdminClient<DefaultClientContext> = client_config(config, Part::Admin)
        .create()
        .map_err(|e| error(name, "creating the admin client", e))?;
    create_with(
        &admin,
        name,
        topics,
        Duration::from_millis(config.timeout_ms),
    )
    .await
}

/// Creates `topics` where missing; what happened to each (`created`, `exists`).
pub(super) async fn create_with(
    admin: &AdminClient<DefaultClientContext>,
    name: &str,
    topics: &[KafkaTopicConfig],
    timeout: Duration,
) -> Result<Vec<(String, String)>, BrokerError> {
    let settings: Vec<Vec<(&str, &str)>> = topics
        .iter()
        .map(|t| {
            t.settings
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect()
        })
        .collect();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .zip(&settings)
        .map(|(t, settings)| {
            let mut topic = NewTopic::new(
                &t.name,
                t.partitions,
                TopicReplication::Fixed(t.replication),
            );
            topic.config = settings.clone();
            topic
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let results = admin
        .create_topics(&new, &options)
        .await
        .map_err(|e| error(name, "creating topics", e))?;
    let mut report = Vec::new();
    for result in results {
        match result {
            Ok(topic) => report.push((format!("topic {topic}"), "created".to_owned())),
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                report.push((format!("topic {topic}"), "exists".to_owned()))
            }
            Err((topic, code)) => {
                return Err(error(
                    name,
                    &format!("creating topic `{topic}`"),
                    KafkaError::AdminOp(code),
                ));
            }
        }
    }
    Ok(report)
}

/// The topics connection `name` creates: those its definition names, then those `routes`
/// use on it (one partition each).
pub(crate) fn topics_for(
    name: &str,
    config: &KafkaConfig,
    routes: &[RouteConfig],
) -> Vec<KafkaTopicConfig> {
    let mut topics = config.topics.clone();
    for address in routes.iter().flat_map(crate::broker::route_addresses) {
        if address.connection == name
            && is_kafka_topic(&address.address)
            && !topics.iter().any(|t| t.name == address.address)
        {
            topics.push(single(&address.address));
        }
    }
    topics
}

pub(super) fn single(topic: &str) -> KafkaTopicConfig {
    KafkaTopicConfig {
        name: topic.to_owned(),
        partitions: 1,
        replication: 1,
        settings: Default::default(),
    }
}
