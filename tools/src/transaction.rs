//! `silt transaction ...`: transactions over the Kafka API (ListTransactions,
//! DescribeTransactions), like `kafka-transactions.sh`.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use kafka_protocol::messages::{
    DescribeTransactionsRequest, ListTransactionsRequest, TransactionalId,
};

use crate::brokers::Brokers;
use crate::client::{check, str_bytes};
use crate::topic::BrokerArgs;

/// Transaction commands.
#[derive(Debug, Subcommand)]
pub(crate) enum TransactionCommand {
    /// List the transactional ids of the cluster with their producer and state.
    #[command(alias = "ls")]
    List,
    /// Show a transactional id's producer, epoch, state, timeout and open partitions.
    Describe {
        /// Transactional id.
        id: String,
    },
}

/// Runs a transaction command.
pub(crate) async fn run(command: TransactionCommand, brokers: &BrokerArgs) -> Result<()> {
    let mut brokers = Brokers::connect(&brokers.brokers).await?;
    match command {
        TransactionCommand::List => list(&mut brokers).await,
        TransactionCommand::Describe { id } => describe(&mut brokers, &id).await,
    }
}

/// Every broker lists the transactional ids it coordinates.
async fn list(brokers: &mut Brokers) -> Result<()> {
    let mut all = BTreeMap::new();
    for id in brokers.broker_ids().await? {
        // A broker that does not answer is named, and the others still listed.
        let asked = match brokers.broker(id).await {
            Ok(client) => client.send(ListTransactionsRequest::default(), 0).await,
            Err(e) => Err(e),
        };
        let response = match asked {
            Ok((response, _)) => response,
            Err(e) => {
                brokers.drop_broker(id);
                eprintln!("warning: broker {id} did not answer: {e:#}");
                continue;
            }
        };
        check(
            response.error_code,
            None,
            &format!("list transactions on broker {id}"),
        )?;
        for state in response.transaction_states {
            all.insert(
                state.transactional_id.0.to_string(),
                (state.producer_id.0, state.transaction_state.to_string(), id),
            );
        }
    }
    println!(
        "{:<40} {:>12} {:<16} COORDINATOR",
        "TRANSACTIONAL-ID", "PRODUCER-ID", "STATE"
    );
    for (id, (producer, state, coordinator)) in all {
        println!("{id:<40} {producer:>12} {state:<16} {coordinator}");
    }
    Ok(())
}

async fn describe(brokers: &mut Brokers, id: &str) -> Result<()> {
    let (response, _) = brokers
        .coordinator_of(id, 1)
        .await?
        .send(
            DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![TransactionalId(str_bytes(id))]),
            0,
        )
        .await?;
    let state = response
        .transaction_states
        .into_iter()
        .next()
        .context("empty DescribeTransactions response")?;
    if state.error_code == 105 {
        bail!("transactional id {id} is not known to its coordinator");
    }
    check(state.error_code, None, &format!("transaction {id}"))?;
    println!("TRANSACTIONAL-ID  {id}");
    println!("PRODUCER-ID       {}", state.producer_id.0);
    println!("PRODUCER-EPOCH    {}", state.producer_epoch);
    println!("STATE             {}", state.transaction_state.as_str());
    println!("TIMEOUT-MS        {}", state.transaction_timeout_ms);
    if state.transaction_start_time_ms >= 0 {
        println!("STARTED-MS        {}", state.transaction_start_time_ms);
    }
    for topic in state.topics {
        for partition in topic.partitions {
            println!("PARTITION         {}/{partition}", topic.topic.0.as_str());
        }
    }
    Ok(())
}
