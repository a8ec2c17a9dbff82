//! InitProducerId. An idempotent producer gets a fresh producer id at epoch 0, never reused
//! anywhere in the cluster (each node takes blocks of ids from the controller); as in Kafka,
//! whatever id it sends. A transactional producer asks its transaction coordinator, which
//! maps its transactional id to a producer id and bumps the epoch (fencing the previous
//! instance, KIP-360), see [`crate::txn::coordinator::init_producer_id`].

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::node::Node;
use crate::protocol::error_code::ErrorCode;
use crate::security::acl::{Operation, ResourceType};
use crate::security::{CLUSTER, Caller};

pub(super) async fn handle(
    node: Arc<Node>,
    request: InitProducerIdRequest,
    caller: &Caller,
) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if let Some(id) = &request.transactional_id {
        if !caller.txn(Operation::Write, id) {
            return response.with_error_code(ErrorCode::TransactionalIdAuthorizationFailed.code());
        }
        let asked = crate::txn::state::InitRequest {
            producer_id: request.producer_id.0,
            producer_epoch: request.producer_epoch,
            timeout_ms: request.transaction_timeout_ms,
        };
        return match crate::txn::coordinator::init_producer_id(&node, id, asked).await {
            Ok((producer_id, epoch)) => response
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(epoch),
            Err(code) => response.with_error_code(code.code()),
        };
    }
    // Kafka (KIP-679): IDEMPOTENT_WRITE on the cluster, or WRITE on any topic.
    let may_write = caller.sees(Operation::IdempotentWrite, ResourceType::Cluster, CLUSTER)
        || node
            .topics
            .all()
            .iter()
            .any(|t| caller.sees(Operation::Write, ResourceType::Topic, &t.name));
    if !may_write {
        return response.with_error_code(ErrorCode::ClusterAuthorizationFailed.code());
    }
    match node.allocate_producer_id().await {
        Ok(id) => response
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            // The controller hands out producer ids; without a quorum, retry later.
            tracing::warn!(error = %e, "could not reserve producer ids");
            response.with_error_code(ErrorCode::CoordinatorNotAvailable.code())
        }
    }
}
