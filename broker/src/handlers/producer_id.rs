//! InitProducerId for idempotent producers: a fresh producer id at epoch 0, never reused
//! anywhere in the cluster (each node takes blocks of ids from the controller).
//!
//! As in Kafka, a non-transactional producer gets a new id whatever id it sends (KIP-360's
//! epoch bump is a transactional-coordinator feature). Transactional ids need the transaction
//! coordinator, which silt does not have: such requests are refused.

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::node::Node;
use crate::protocol::error_code::ErrorCode;

pub(super) async fn handle(
    node: Arc<Node>,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if request.transactional_id.is_some() {
        return response.with_error_code(ErrorCode::InvalidRequest.code());
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
