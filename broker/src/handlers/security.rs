//! CreateAcls, DescribeAcls, DeleteAcls, AlterUserScramCredentials and
//! DescribeUserScramCredentials: users and ACLs in the controller's state.
//!
//! Changing them takes ALTER on the cluster, reading them DESCRIBE (Kafka's rules); each
//! change is one controller command, so every node sees it at the same log position.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, CreateAclsRequest,
    CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest,
    DescribeAclsResponse, DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::controller::{Command, Reply};
use crate::node::Node;
use crate::protocol::ErrorCode;
use crate::security::Caller;
use crate::security::acl::{
    AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType,
};
use crate::security::scram::{Credential, MAX_ITERATIONS, MIN_ITERATIONS, Mechanism};

/// Why a part of a request was refused: its code and a sentence.
type Refused = (ErrorCode, String);

fn message(text: impl Into<String>) -> Option<StrBytes> {
    Some(StrBytes::from_string(text.into()))
}

fn binding(c: &AclCreation) -> Result<AclBinding, String> {
    let binding = AclBinding {
        resource_type: ResourceType::from_code(c.resource_type)
            .ok_or_else(|| format!("unknown resource type {}", c.resource_type))?,
        resource_name: c.resource_name.to_string(),
        pattern_type: PatternType::from_code(c.resource_pattern_type)
            .ok_or_else(|| format!("unknown pattern type {}", c.resource_pattern_type))?,
        principal: c.principal.to_string(),
        host: c.host.to_string(),
        operation: Operation::from_code(c.operation)
            .ok_or_else(|| format!("unknown operation {}", c.operation))?,
        permission: Permission::from_code(c.permission_type)
            .ok_or_else(|| format!("unknown permission type {}", c.permission_type))?,
    };
    match binding.invalid() {
        Some(why) => Err(why),
        None => Ok(binding),
    }
}

#[allow(clippy::too_many_arguments)]
fn filter(
    resource_type: i8,
    name: &Option<StrBytes>,
    pattern_type: i8,
    principal: &Option<StrBytes>,
    host: &Option<StrBytes>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, String> {
    Ok(AclFilter {
        resource_type: ResourceType::from_code(resource_type)
            .ok_or_else(|| format!("unknown resource type {resource_type}"))?,
        resource_name: name.as_ref().map(|n| n.to_string()),
        pattern_type: PatternType::from_code(pattern_type)
            .ok_or_else(|| format!("unknown pattern type {pattern_type}"))?,
        principal: principal.as_ref().map(|p| p.to_string()),
        host: host.as_ref().map(|h| h.to_string()),
        operation: Operation::from_code(operation)
            .ok_or_else(|| format!("unknown operation {operation}"))?,
        permission: Permission::from_code(permission)
            .ok_or_else(|| format!("unknown permission type {permission}"))?,
    })
}

async fn propose(node: &Node, command: Command) -> Result<(), Refused> {
    match node.cluster.propose(command).await {
        Ok(Reply::Refused { refusal, message }) => Err((
            match refusal {
                crate::controller::Refusal::Unknown => ErrorCode::ResourceNotFound,
                _ => ErrorCode::InvalidRequest,
            },
            message,
        )),
        Ok(_) => Ok(()),
        Err(e) => Err((ErrorCode::RequestTimedOut, e.to_string())),
    }
}

pub(super) async fn create_acls(
    node: &Node,
    request: CreateAclsRequest,
    caller: &Caller,
) -> CreateAclsResponse {
    let denied = !caller.cluster(Operation::Alter);
    let parsed: Vec<Result<AclBinding, Refused>> = request
        .creations
        .iter()
        .map(|c| {
            if denied {
                Err((
                    ErrorCode::ClusterAuthorizationFailed,
                    "creating ACLs takes ALTER on the cluster".to_string(),
                ))
            } else {
                binding(c).map_err(|why| (ErrorCode::InvalidRequest, why))
            }
        })
        .collect();
    let valid: Vec<AclBinding> = parsed.iter().filter_map(|p| p.clone().ok()).collect();
    let outcome = if valid.is_empty() {
        Ok(())
    } else {
        propose(node, Command::CreateAcls { acls: valid }).await
    };
    let results = parsed
        .into_iter()
        .map(|p| {
            let failed = match (p, &outcome) {
                (Ok(_), Ok(())) => return AclCreationResult::default(),
                (Ok(_), Err(e)) => e.clone(),
                (Err(e), _) => e,
            };
            AclCreationResult::default()
                .with_error_code(failed.0.code())
                .with_error_message(message(failed.1))
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

pub(super) fn describe_acls(
    node: &Node,
    request: DescribeAclsRequest,
    caller: &Caller,
) -> DescribeAclsResponse {
    if !caller.cluster(Operation::Describe) {
        return DescribeAclsResponse::default()
            .with_error_code(ErrorCode::ClusterAuthorizationFailed.code())
            .with_error_message(message("describing ACLs takes DESCRIBE on the cluster"));
    }
    let filter = match filter(
        request.resource_type_filter,
        &request.resource_name_filter,
        request.pattern_type_filter,
        &request.principal_filter,
        &request.host_filter,
        request.operation,
        request.permission_type,
    ) {
        Ok(f) => f,
        Err(why) => {
            return DescribeAclsResponse::default()
                .with_error_code(ErrorCode::InvalidRequest.code())
                .with_error_message(message(why));
        }
    };
    let state = node.cluster.controller.state();
    let mut resources: BTreeMap<(ResourceType, String, PatternType), Vec<AclDescription>> =
        BTreeMap::new();
    for b in state.acls.iter().filter(|b| filter.matches(b)) {
        resources
            .entry((b.resource_type, b.resource_name.clone(), b.pattern_type))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(str_bytes(&b.principal))
                    .with_host(str_bytes(&b.host))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code()),
            );
    }
    DescribeAclsResponse::default().with_resources(
        resources
            .into_iter()
            .map(|((rt, name, pattern), acls)| {
                DescribeAclsResource::default()
                    .with_resource_type(rt.code())
                    .with_resource_name(str_bytes(&name))
                    .with_pattern_type(pattern.code())
                    .with_acls(acls)
            })
            .collect(),
    )
}

pub(super) async fn delete_acls(
    node: &Node,
    request: DeleteAclsRequest,
    caller: &Caller,
) -> DeleteAclsResponse {
    if !caller.cluster(Operation::Alter) {
        let results = request
            .filters
            .iter()
            .map(|_| {
                DeleteAclsFilterResult::default()
                    .with_error_code(ErrorCode::ClusterAuthorizationFailed.code())
                    .with_error_message(message("deleting ACLs takes ALTER on the cluster"))
            })
            .collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let state = node.cluster.controller.state();
    let mut matched: Vec<Result<Vec<AclBinding>, String>> = Vec::new();
    for f in &request.filters {
        matched.push(
            filter(
                f.resource_type_filter,
                &f.resource_name_filter,
                f.pattern_type_filter,
                &f.principal_filter,
                &f.host_filter,
                f.operation,
                f.permission_type,
            )
            .map(|filter| {
                state
                    .acls
                    .iter()
                    .filter(|b| filter.matches(b))
                    .cloned()
                    .collect()
            }),
        );
    }
    let doomed: Vec<AclBinding> = matched
        .iter()
        .flat_map(|m| m.iter().flatten().cloned())
        .collect();
    let outcome = if doomed.is_empty() {
        Ok(())
    } else {
        propose(node, Command::DeleteAcls { acls: doomed }).await
    };
    let results = matched
        .into_iter()
        .map(|m| match (m, &outcome) {
            (Err(why), _) => DeleteAclsFilterResult::default()
                .with_error_code(ErrorCode::InvalidRequest.code())
                .with_error_message(message(why)),
            (Ok(_), Err((code, why))) => DeleteAclsFilterResult::default()
                .with_error_code(code.code())
                .with_error_message(message(why.clone())),
            (Ok(bindings), Ok(())) => DeleteAclsFilterResult::default().with_matching_acls(
                bindings
                    .iter()
                    .map(|b| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(b.resource_type.code())
                            .with_resource_name(str_bytes(&b.resource_name))
                            .with_pattern_type(b.pattern_type.code())
                            .with_principal(str_bytes(&b.principal))
                            .with_host(str_bytes(&b.host))
                            .with_operation(b.operation.code())
                            .with_permission_type(b.permission.code())
                    })
                    .collect(),
            ),
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}

pub(super) async fn alter_scram(
    node: &Node,
    request: AlterUserScramCredentialsRequest,
    caller: &Caller,
) -> AlterUserScramCredentialsResponse {
    let allowed = caller.cluster(Operation::Alter);
    let mut results = Vec::new();
    let mut commands: Vec<(String, Result<Command, Refused>)> = Vec::new();
    // Kafka refuses a request naming one user twice for the same mechanism.
    let mut seen = std::collections::HashSet::new();
    let duplicate = |seen: &mut std::collections::HashSet<(String, i8)>, user: &str, m: i8| {
        !seen.insert((user.to_string(), m))
    };
    for d in &request.deletions {
        let user = d.name.to_string();
        let command = if !allowed {
            Err((
                ErrorCode::ClusterAuthorizationFailed,
                "changing users takes ALTER on the cluster".to_string(),
            ))
        } else if duplicate(&mut seen, &user, d.mechanism) {
            Err((
                ErrorCode::DuplicateResource,
                "the user and mechanism appear twice in the request".to_string(),
            ))
        } else {
            match Mechanism::from_code(d.mechanism) {
                None => Err((
                    ErrorCode::UnsupportedSaslMechanism,
                    format!("unknown SCRAM mechanism {}", d.mechanism),
                )),
                Some(mechanism) if !user.is_empty() => Ok(Command::DeleteScram {
                    user: user.clone(),
                    mechanism,
                }),
                Some(_) => Err((ErrorCode::UnacceptableCredential, "empty user name".into())),
            }
        };
        commands.push((user, command));
    }
    for u in &request.upsertions {
        let user = u.name.to_string();
        let command = if !allowed {
            Err((
                ErrorCode::ClusterAuthorizationFailed,
                "changing users takes ALTER on the cluster".to_string(),
            ))
        } else if duplicate(&mut seen, &user, u.mechanism) {
            Err((
                ErrorCode::DuplicateResource,
                "the user and mechanism appear twice in the request".to_string(),
            ))
        } else {
            match Mechanism::from_code(u.mechanism) {
                None => Err((
                    ErrorCode::UnsupportedSaslMechanism,
                    format!("unknown SCRAM mechanism {}", u.mechanism),
                )),
                Some(_) if user.is_empty() => {
                    Err((ErrorCode::UnacceptableCredential, "empty user name".into()))
                }
                Some(_) if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&u.iterations) => Err((
                    ErrorCode::UnacceptableCredential,
                    format!(
                        "iterations must be from {MIN_ITERATIONS} to {MAX_ITERATIONS}, not {}",
                        u.iterations
                    ),
                )),
                Some(m) if u.salt.is_empty() || u.salted_password.len() != m.hash_len() => Err((
                    ErrorCode::UnacceptableCredential,
                    format!(
                        "a salt and a {}-byte salted password are needed",
                        m.hash_len()
                    ),
                )),
                Some(mechanism) => Ok(Command::SetScram {
                    user: user.clone(),
                    mechanism,
                    credential: Credential::from_salted(
                        mechanism,
                        &u.salt,
                        &u.salted_password,
                        u.iterations as u32,
                    ),
                }),
            }
        };
        commands.push((user, command));
    }
    for (user, command) in commands {
        let outcome = match command {
            Ok(command) => propose(node, command).await,
            Err(e) => Err(e),
        };
        let result = AlterUserScramCredentialsResult::default().with_user(str_bytes(&user));
        results.push(match outcome {
            Ok(()) => {
                tracing::info!(
                    user,
                    principal = caller.principal(),
                    "SCRAM credential changed"
                );
                result
            }
            Err((code, why)) => result
                .with_error_code(code.code())
                .with_error_message(message(why)),
        });
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}

pub(super) fn describe_scram(
    node: &Node,
    request: DescribeUserScramCredentialsRequest,
    caller: &Caller,
) -> DescribeUserScramCredentialsResponse {
    if !caller.cluster(Operation::Describe) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(ErrorCode::ClusterAuthorizationFailed.code())
            .with_error_message(message("describing users takes DESCRIBE on the cluster"));
    }
    let state = node.cluster.controller.state();
    let names: Vec<String> = match &request.users {
        None => state.users.keys().cloned().collect(),
        Some(users) if users.is_empty() => state.users.keys().cloned().collect(),
        Some(users) => users.iter().map(|u| u.name.to_string()).collect(),
    };
    let mut seen = std::collections::HashSet::new();
    let results = names
        .into_iter()
        .map(|name| {
            let result = DescribeUserScramCredentialsResult::default().with_user(str_bytes(&name));
            if !seen.insert(name.clone()) {
                return result
                    .with_error_code(ErrorCode::DuplicateResource.code())
                    .with_error_message(message("user named twice"));
            }
            match state.users.get(&name) {
                Some(credentials) => result.with_credential_infos(
                    credentials
                        .mechanisms()
                        .into_iter()
                        .map(|(m, iterations)| {
                            CredentialInfo::default()
                                .with_mechanism(m.code())
                                .with_iterations(iterations as i32)
                        })
                        .collect(),
                ),
                None => result
                    .with_error_code(ErrorCode::ResourceNotFound.code())
                    .with_error_message(message(format!("no user '{name}'"))),
            }
        })
        .collect();
    DescribeUserScramCredentialsResponse::default().with_results(results)
}
