//! `silt user ...` (SCRAM users, as `kafka-configs.sh --alter --add-config SCRAM-...` and
//! `rpk security user`) and `silt acl ...` (as `kafka-acls.sh` and `rpk security acl`), over
//! the Kafka API: AlterUserScramCredentials, DescribeUserScramCredentials, CreateAcls,
//! DescribeAcls, DeleteAcls.

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::{Args, Subcommand};
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest,
    DescribeUserScramCredentialsRequest,
};
use silt_broker::security::acl::{Operation, PatternType, Permission, ResourceType};
use silt_broker::security::scram::{MIN_ITERATIONS, Mechanism, random_bytes};

use crate::brokers::Brokers;
use crate::client::{check, str_bytes};
use crate::topic::BrokerArgs;

/// User commands.
#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Create a user, or change its password (SCRAM-SHA-256 and -512 credentials).
    Create {
        /// User name.
        name: String,
        /// Password (or SILT_CLI_NEW_PASSWORD, so it stays out of the shell history).
        #[arg(long, env = "SILT_CLI_NEW_PASSWORD", hide_env_values = true)]
        password: String,
        /// Only this mechanism: SCRAM-SHA-256 or SCRAM-SHA-512.
        #[arg(long)]
        mechanism: Option<String>,
        /// PBKDF2 iterations (4096 to 16384).
        #[arg(long, default_value_t = MIN_ITERATIONS)]
        iterations: i32,
    },
    /// Delete a user (all its credentials).
    Delete {
        /// User name.
        name: String,
    },
    /// List users and their mechanisms.
    #[command(alias = "ls")]
    List,
}

/// ACL commands.
#[derive(Debug, Subcommand)]
pub(crate) enum AclCommand {
    /// Add ACLs: each operation for each principal on the resource.
    Create(AclArgs),
    /// List the ACLs matching a filter (all by default).
    #[command(alias = "ls")]
    List(AclFilterArgs),
    /// Delete the ACLs matching a filter.
    Delete(AclFilterArgs),
}

/// What an ACL grants or denies.
#[derive(Debug, Args)]
pub(crate) struct AclArgs {
    /// Principal(s), User:NAME (a bare NAME is a user; User:* is everyone).
    #[arg(long = "principal", required = true)]
    principals: Vec<String>,
    /// Operation(s): all, read, write, create, delete, alter, describe, describe-configs,
    /// alter-configs, idempotent-write.
    #[arg(long = "operation", required = true)]
    operations: Vec<String>,
    /// Topic name (or prefix with --prefixed; * for every topic).
    #[arg(long, group = "resource")]
    topic: Option<String>,
    /// Consumer group id (or prefix).
    #[arg(long, group = "resource")]
    group: Option<String>,
    /// Transactional id (or prefix).
    #[arg(long, group = "resource")]
    transactional_id: Option<String>,
    /// The cluster itself.
    #[arg(long, group = "resource")]
    cluster: bool,
    /// The name is a prefix.
    #[arg(long)]
    prefixed: bool,
    /// Deny instead of allow.
    #[arg(long)]
    deny: bool,
    /// Host the principal connects from (default: any).
    #[arg(long, default_value = "*")]
    host: String,
}

/// Which ACLs to list or delete; unset fields match anything.
#[derive(Debug, Args)]
pub(crate) struct AclFilterArgs {
    /// Principal.
    #[arg(long)]
    principal: Option<String>,
    /// Operation.
    #[arg(long)]
    operation: Option<String>,
    /// Topic.
    #[arg(long)]
    topic: Option<String>,
    /// Group.
    #[arg(long)]
    group: Option<String>,
    /// Transactional id.
    #[arg(long)]
    transactional_id: Option<String>,
    /// The cluster.
    #[arg(long)]
    cluster: bool,
    /// Only prefixed bindings (default: literal and prefixed of that exact name).
    #[arg(long)]
    prefixed: bool,
}

fn principal(p: &str) -> String {
    if p.contains(':') {
        p.to_string()
    } else {
        format!("User:{p}")
    }
}

fn operation(text: &str) -> Result<Operation> {
    Operation::parse(text)
        .filter(|o| *o != Operation::Any)
        .with_context(|| format!("unknown operation {text:?}"))
}

fn resource(
    topic: &Option<String>,
    group: &Option<String>,
    txn: &Option<String>,
    cluster: bool,
) -> Option<(ResourceType, String)> {
    if let Some(t) = topic {
        return Some((ResourceType::Topic, t.clone()));
    }
    if let Some(g) = group {
        return Some((ResourceType::Group, g.clone()));
    }
    if let Some(t) = txn {
        return Some((ResourceType::TransactionalId, t.clone()));
    }
    cluster.then(|| {
        (
            ResourceType::Cluster,
            silt_broker::security::CLUSTER.to_string(),
        )
    })
}

/// Runs a user command.
pub(crate) async fn run_user(command: UserCommand, brokers: &BrokerArgs) -> Result<()> {
    let mut brokers = Brokers::connect(&brokers.brokers).await?;
    let client = brokers.any();
    match command {
        UserCommand::Create {
            name,
            password,
            mechanism,
            iterations,
        } => {
            let mechanisms = match mechanism {
                Some(m) => vec![
                    Mechanism::from_name(&m.to_ascii_uppercase())
                        .with_context(|| format!("unknown mechanism {m}"))?,
                ],
                None => Mechanism::ALL.to_vec(),
            };
            let upsertions = mechanisms
                .into_iter()
                .map(|m| {
                    let salt = random_bytes(24);
                    let salted = m.salted_password(password.as_bytes(), &salt, iterations as u32);
                    ScramCredentialUpsertion::default()
                        .with_name(str_bytes(&name))
                        .with_mechanism(m.code())
                        .with_iterations(iterations)
                        .with_salt(Bytes::from(salt))
                        .with_salted_password(Bytes::from(salted))
                })
                .collect();
            let request = AlterUserScramCredentialsRequest::default().with_upsertions(upsertions);
            alter_users(client, request, &name).await?;
            println!("user {name} created");
        }
        UserCommand::Delete { name } => {
            let (described, _) = client
                .send(
                    DescribeUserScramCredentialsRequest::default()
                        .with_users(Some(vec![UserName::default().with_name(str_bytes(&name))])),
                    0,
                )
                .await?;
            check(
                described.error_code,
                described.error_message.as_ref(),
                "describe users",
            )?;
            let result = described
                .results
                .first()
                .context("no answer for the user")?;
            check(
                result.error_code,
                result.error_message.as_ref(),
                &format!("user {name}"),
            )?;
            let deletions = result
                .credential_infos
                .iter()
                .map(|c| {
                    ScramCredentialDeletion::default()
                        .with_name(str_bytes(&name))
                        .with_mechanism(c.mechanism)
                })
                .collect();
            let request = AlterUserScramCredentialsRequest::default().with_deletions(deletions);
            alter_users(client, request, &name).await?;
            println!("user {name} deleted");
        }
        UserCommand::List => {
            let (response, _) = client
                .send(DescribeUserScramCredentialsRequest::default(), 0)
                .await?;
            check(
                response.error_code,
                response.error_message.as_ref(),
                "list users",
            )?;
            println!("{:<32} MECHANISMS", "USER");
            for r in &response.results {
                let mechanisms: Vec<String> = r
                    .credential_infos
                    .iter()
                    .map(|c| {
                        let name = Mechanism::from_code(c.mechanism).map_or("?", |m| m.name());
                        format!("{name} ({} iterations)", c.iterations)
                    })
                    .collect();
                println!("{:<32} {}", r.user, mechanisms.join(", "));
            }
        }
    }
    Ok(())
}

/// Sends an AlterUserScramCredentials request and turns any refusal into an error.
async fn alter_users(
    client: &mut crate::client::Client,
    request: AlterUserScramCredentialsRequest,
    name: &str,
) -> Result<()> {
    let (response, _) = client.send(request, 0).await?;
    for r in &response.results {
        check(
            r.error_code,
            r.error_message.as_ref(),
            &format!("user {name}"),
        )?;
    }
    Ok(())
}

/// Runs an ACL command.
pub(crate) async fn run_acl(command: AclCommand, brokers: &BrokerArgs) -> Result<()> {
    let mut brokers = Brokers::connect(&brokers.brokers).await?;
    let client = brokers.any();
    match command {
        AclCommand::Create(args) => {
            let (resource_type, name) = resource(
                &args.topic,
                &args.group,
                &args.transactional_id,
                args.cluster,
            )
            .context("name a resource: --topic, --group, --transactional-id or --cluster")?;
            let mut creations = Vec::new();
            for p in &args.principals {
                for o in &args.operations {
                    creations.push(
                        AclCreation::default()
                            .with_resource_type(resource_type.code())
                            .with_resource_name(str_bytes(&name))
                            .with_resource_pattern_type(
                                if args.prefixed {
                                    PatternType::Prefixed
                                } else {
                                    PatternType::Literal
                                }
                                .code(),
                            )
                            .with_principal(str_bytes(&principal(p)))
                            .with_host(str_bytes(&args.host))
                            .with_operation(operation(o)?.code())
                            .with_permission_type(
                                if args.deny {
                                    Permission::Deny
                                } else {
                                    Permission::Allow
                                }
                                .code(),
                            ),
                    );
                }
            }
            let count = creations.len();
            let (response, _) = client
                .send(CreateAclsRequest::default().with_creations(creations), 3)
                .await?;
            for r in &response.results {
                check(r.error_code, r.error_message.as_ref(), "create ACL")?;
            }
            println!("{count} ACL(s) created");
        }
        AclCommand::List(filter) => {
            let f = acl_filter(&filter)?;
            let request = DescribeAclsRequest::default()
                .with_resource_type_filter(f.resource_type_filter)
                .with_resource_name_filter(f.resource_name_filter)
                .with_pattern_type_filter(f.pattern_type_filter)
                .with_principal_filter(f.principal_filter)
                .with_host_filter(f.host_filter)
                .with_operation(f.operation)
                .with_permission_type(f.permission_type);
            let (response, _) = client.send(request, 3).await?;
            check(
                response.error_code,
                response.error_message.as_ref(),
                "list ACLs",
            )?;
            println!(
                "{:<24} {:<10} {:<16} {:<24} {:<16} {:<18} PERMISSION",
                "PRINCIPAL", "HOST", "RESOURCE", "NAME", "PATTERN", "OPERATION"
            );
            for r in &response.resources {
                let rt = ResourceType::from_code(r.resource_type).map_or("?", |t| t.name());
                let pattern = PatternType::from_code(r.pattern_type).map_or("?", |t| t.name());
                for a in &r.acls {
                    println!(
                        "{:<24} {:<10} {:<16} {:<24} {:<16} {:<18} {}",
                        a.principal.as_str(),
                        a.host.as_str(),
                        rt,
                        r.resource_name.as_str(),
                        pattern,
                        Operation::from_code(a.operation).map_or("?", |o| o.name()),
                        Permission::from_code(a.permission_type).map_or("?", |p| p.name()),
                    );
                }
            }
        }
        AclCommand::Delete(filter) => {
            let request = DeleteAclsRequest::default().with_filters(vec![acl_filter(&filter)?]);
            let (response, _) = client.send(request, 3).await?;
            let mut deleted = 0;
            for r in &response.filter_results {
                check(r.error_code, r.error_message.as_ref(), "delete ACLs")?;
                deleted += r.matching_acls.len();
            }
            println!("{deleted} ACL(s) deleted");
        }
    }
    Ok(())
}

/// The filter `silt acl list|delete` asks with: unset fields match anything.
fn acl_filter(filter: &AclFilterArgs) -> Result<DeleteAclsFilter> {
    let (resource_type, name) = filter_resource(filter);
    Ok(DeleteAclsFilter::default()
        .with_resource_type_filter(resource_type.code())
        .with_resource_name_filter(name.as_deref().map(str_bytes))
        .with_pattern_type_filter(filter_pattern(filter).code())
        .with_principal_filter(
            filter
                .principal
                .as_deref()
                .map(|p| str_bytes(&principal(p))),
        )
        .with_host_filter(None)
        .with_operation(filter_operation(filter)?.code())
        .with_permission_type(Permission::Any.code()))
}

fn filter_resource(filter: &AclFilterArgs) -> (ResourceType, Option<String>) {
    match resource(
        &filter.topic,
        &filter.group,
        &filter.transactional_id,
        filter.cluster,
    ) {
        Some((rt, name)) => (rt, Some(name)),
        None => (ResourceType::Any, None),
    }
}

fn filter_pattern(filter: &AclFilterArgs) -> PatternType {
    if filter.prefixed {
        PatternType::Prefixed
    } else {
        PatternType::Any
    }
}

fn filter_operation(filter: &AclFilterArgs) -> Result<Operation> {
    match &filter.operation {
        Some(o) => operation(o),
        None => Ok(Operation::Any),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_and_operations_parse_as_kafka_acls_writes_them() {
        assert_eq!(principal("alice"), "User:alice");
        assert_eq!(principal("User:*"), "User:*");
        assert_eq!(
            operation("describe-configs").ok(),
            Some(Operation::DescribeConfigs)
        );
        assert_eq!(operation("WRITE").ok(), Some(Operation::Write));
        assert!(operation("any").is_err());
        assert!(operation("fly").is_err());
    }
}
