//! Kafka's ACLs: bindings as the controller stores them, filters as Describe/DeleteAcls send
//! them, and an index that answers "may this principal do this" without scanning every binding.
//!
//! Semantics are Kafka's `AclAuthorizer`: a super user may do anything; a matching DENY wins;
//! otherwise a matching ALLOW allows, where ALL matches every operation and READ, WRITE, DELETE
//! or ALTER imply DESCRIBE and ALTER_CONFIGS implies DESCRIBE_CONFIGS; a resource with no
//! binding at all is open only with `allow_everyone_if_no_acl_found`. A binding matches a
//! resource literally, by the wildcard name `*`, or by prefix; a principal exactly or by
//! `User:*`; a host exactly or by `*`.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The wildcard resource name, principal name and host.
pub const WILDCARD: &str = "*";

macro_rules! kafka_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $code:literal => $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* $variant),*
        }

        impl $name {
            /// Kafka's code.
            pub fn code(self) -> i8 {
                match self { $($name::$variant => $code),* }
            }

            /// From Kafka's code.
            pub fn from_code(code: i8) -> Option<$name> {
                match code { $($code => Some($name::$variant),)* _ => None }
            }

            /// Kafka's name (as its CLI prints it).
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }

            /// From Kafka's name, any case, `-` or `_` between words.
            pub fn parse(text: &str) -> Option<$name> {
                let wanted = text.to_ascii_uppercase().replace('-', "_");
                [$($name::$variant),*].into_iter().find(|v| v.name() == wanted)
            }
        }
    };
}

kafka_enum!(
    /// What a binding is about.
    ResourceType {
        /// In filters only.
        Any = 1 => "ANY",
        /// A topic.
        Topic = 2 => "TOPIC",
        /// A consumer group.
        Group = 3 => "GROUP",
        /// The cluster (`kafka-cluster`).
        Cluster = 4 => "CLUSTER",
        /// A transactional id.
        TransactionalId = 5 => "TRANSACTIONAL_ID",
        /// Delegation tokens (stored, never used: silt has none).
        DelegationToken = 6 => "DELEGATION_TOKEN",
        /// A user (for delegation tokens).
        User = 7 => "USER",
    }
);

kafka_enum!(
    /// How a binding's name matches.
    PatternType {
        /// In filters only: any pattern type, the name exactly.
        Any = 1 => "ANY",
        /// In filters only: every binding that applies to the name.
        Match = 2 => "MATCH",
        /// The name itself (or `*`: every name).
        Literal = 3 => "LITERAL",
        /// Every name starting with it.
        Prefixed = 4 => "PREFIXED",
    }
);

kafka_enum!(
    /// What is done.
    Operation {
        /// In filters only.
        Any = 1 => "ANY",
        /// Every operation.
        All = 2 => "ALL",
        /// Read.
        Read = 3 => "READ",
        /// Write.
        Write = 4 => "WRITE",
        /// Create.
        Create = 5 => "CREATE",
        /// Delete.
        Delete = 6 => "DELETE",
        /// Alter.
        Alter = 7 => "ALTER",
        /// Describe.
        Describe = 8 => "DESCRIBE",
        /// Cluster action.
        ClusterAction = 9 => "CLUSTER_ACTION",
        /// Describe configs.
        DescribeConfigs = 10 => "DESCRIBE_CONFIGS",
        /// Alter configs.
        AlterConfigs = 11 => "ALTER_CONFIGS",
        /// Idempotent write.
        IdempotentWrite = 12 => "IDEMPOTENT_WRITE",
        /// Create tokens.
        CreateTokens = 13 => "CREATE_TOKENS",
        /// Describe tokens.
        DescribeTokens = 14 => "DESCRIBE_TOKENS",
    }
);

kafka_enum!(
    /// Allow or deny.
    Permission {
        /// In filters only.
        Any = 1 => "ANY",
        /// Deny (wins over allow).
        Deny = 2 => "DENY",
        /// Allow.
        Allow = 3 => "ALLOW",
    }
);

/// One ACL, as stored in the controller's state.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    /// Resource type (never Any).
    pub resource_type: ResourceType,
    /// Resource name (`kafka-cluster` for the cluster; `*` for every name).
    pub resource_name: String,
    /// Literal or prefixed.
    pub pattern_type: PatternType,
    /// `User:NAME` or `User:*`.
    pub principal: String,
    /// An IP address or `*`.
    pub host: String,
    /// The operation (never Any).
    pub operation: Operation,
    /// Allow or deny (never Any).
    pub permission: Permission,
}

impl AclBinding {
    /// Why this binding cannot be stored, if it cannot (Kafka's INVALID_REQUEST cases).
    pub fn invalid(&self) -> Option<String> {
        if matches!(self.resource_type, ResourceType::Any) {
            return Some("resource type ANY is for filters".into());
        }
        if !matches!(
            self.pattern_type,
            PatternType::Literal | PatternType::Prefixed
        ) {
            return Some("pattern type must be LITERAL or PREFIXED".into());
        }
        if self.resource_name.is_empty() {
            return Some("resource name is empty".into());
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != "kafka-cluster" {
            return Some("the cluster resource is named kafka-cluster".into());
        }
        if matches!(self.operation, Operation::Any) {
            return Some("operation ANY is for filters".into());
        }
        if matches!(self.permission, Permission::Any) {
            return Some("permission ANY is for filters".into());
        }
        match self.principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => return Some(format!("principal {:?} is not Type:name", self.principal)),
        }
        if self.host != WILDCARD && self.host.parse::<IpAddr>().is_err() {
            return Some(format!("host {:?} is not an IP address or *", self.host));
        }
        None
    }
}

/// A Describe/DeleteAcls filter; `None` fields match anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    /// Resource type (Any: all).
    pub resource_type: ResourceType,
    /// Resource name.
    pub resource_name: Option<String>,
    /// Pattern type (Any, Match, Literal, Prefixed).
    pub pattern_type: PatternType,
    /// Principal.
    pub principal: Option<String>,
    /// Host.
    pub host: Option<String>,
    /// Operation (Any: all).
    pub operation: Operation,
    /// Permission (Any: all).
    pub permission: Permission,
}

impl AclFilter {
    /// True when `binding` is selected by this filter.
    pub fn matches(&self, binding: &AclBinding) -> bool {
        if self.resource_type != ResourceType::Any && self.resource_type != binding.resource_type {
            return false;
        }
        let name_ok = match (&self.resource_name, self.pattern_type) {
            (None, PatternType::Any | PatternType::Match) => true,
            (None, pattern) => pattern == binding.pattern_type,
            (Some(name), PatternType::Any) => *name == binding.resource_name,
            (Some(name), PatternType::Match) => match binding.pattern_type {
                PatternType::Literal => {
                    binding.resource_name == *name || binding.resource_name == WILDCARD
                }
                PatternType::Prefixed => name.starts_with(&binding.resource_name),
                _ => false,
            },
            (Some(name), pattern) => {
                pattern == binding.pattern_type && *name == binding.resource_name
            }
        };
        name_ok
            && self
                .principal
                .as_ref()
                .is_none_or(|p| *p == binding.principal)
            && self.host.as_ref().is_none_or(|h| *h == binding.host)
            && (self.operation == Operation::Any || self.operation == binding.operation)
            && (self.permission == Permission::Any || self.permission == binding.permission)
    }
}

#[derive(Debug, Clone)]
struct Entry {
    principal: Arc<str>,
    host: Arc<str>,
    operation: Operation,
    permission: Permission,
}

#[derive(Debug, Default)]
struct Resources {
    literal: HashMap<String, Vec<Entry>>,
    wildcard: Vec<Entry>,
    prefixed: HashMap<String, Vec<Entry>>,
    prefix_lengths: BTreeSet<usize>,
}

/// Every ACL, indexed by resource for [`AclIndex::authorize`].
#[derive(Debug, Default)]
pub struct AclIndex {
    by_type: HashMap<ResourceType, Resources>,
    count: usize,
}

/// What [`AclIndex::authorize`] decided, and why (for the audit log and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A matching ALLOW binding.
    Allowed,
    /// No binding names the resource, and everyone is allowed then.
    AllowedNoAcl,
    /// A matching DENY binding.
    Denied,
    /// Bindings name the resource, none allows this.
    NotAllowed,
}

impl Decision {
    /// True for the allowing decisions.
    pub fn allowed(self) -> bool {
        matches!(self, Decision::Allowed | Decision::AllowedNoAcl)
    }
}

impl AclIndex {
    /// Indexes `bindings`.
    pub fn new<'a>(bindings: impl IntoIterator<Item = &'a AclBinding>) -> AclIndex {
        let mut index = AclIndex::default();
        for b in bindings {
            let entry = Entry {
                principal: Arc::from(b.principal.as_str()),
                host: Arc::from(b.host.as_str()),
                operation: b.operation,
                permission: b.permission,
            };
            let resources = index.by_type.entry(b.resource_type).or_default();
            match b.pattern_type {
                PatternType::Literal if b.resource_name == WILDCARD => {
                    resources.wildcard.push(entry)
                }
                PatternType::Literal => resources
                    .literal
                    .entry(b.resource_name.clone())
                    .or_default()
                    .push(entry),
                PatternType::Prefixed => {
                    resources.prefix_lengths.insert(b.resource_name.len());
                    resources
                        .prefixed
                        .entry(b.resource_name.clone())
                        .or_default()
                        .push(entry)
                }
                PatternType::Any | PatternType::Match => continue,
            }
            index.count += 1;
        }
        index
    }

    /// Bindings indexed.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// May `principal` from `host` do `operation` on the resource? (Super users are the
    /// caller's business.)
    pub fn authorize(
        &self,
        principal: &str,
        host: &str,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
        allow_if_no_acl: bool,
    ) -> Decision {
        let Some(resources) = self.by_type.get(&resource_type) else {
            return if allow_if_no_acl {
                Decision::AllowedNoAcl
            } else {
                Decision::NotAllowed
            };
        };
        let mut any = false;
        let mut allowed = false;
        // `User:*` matches every principal of its kind (no allocation: this runs per request).
        let kind = principal.split_once(':').map(|(kind, _)| kind);
        let mut visit = |entries: &[Entry]| -> bool {
            for e in entries {
                any = true;
                let principal_ok = &*e.principal == principal
                    || e.principal
                        .strip_suffix(":*")
                        .is_some_and(|k| Some(k) == kind);
                let host_ok = &*e.host == WILDCARD || &*e.host == host;
                if !principal_ok || !host_ok {
                    continue;
                }
                match e.permission {
                    Permission::Deny
                        if e.operation == operation || e.operation == Operation::All =>
                    {
                        return true;
                    }
                    Permission::Allow if implies(e.operation, operation) => allowed = true,
                    _ => {}
                }
            }
            false
        };
        if let Some(entries) = resources.literal.get(name)
            && visit(entries)
        {
            return Decision::Denied;
        }
        if visit(&resources.wildcard) {
            return Decision::Denied;
        }
        for &len in resources.prefix_lengths.range(..=name.len()) {
            if let Some(prefix) = name.get(..len)
                && let Some(entries) = resources.prefixed.get(prefix)
                && visit(entries)
            {
                return Decision::Denied;
            }
        }
        if allowed {
            Decision::Allowed
        } else if !any && allow_if_no_acl {
            Decision::AllowedNoAcl
        } else {
            Decision::NotAllowed
        }
    }
}

/// True when an ALLOW of `granted` allows `wanted`.
fn implies(granted: Operation, wanted: Operation) -> bool {
    granted == wanted
        || granted == Operation::All
        || (wanted == Operation::Describe
            && matches!(
                granted,
                Operation::Read | Operation::Write | Operation::Delete | Operation::Alter
            ))
        || (wanted == Operation::DescribeConfigs && granted == Operation::AlterConfigs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(
        rt: ResourceType,
        name: &str,
        pattern: PatternType,
        principal: &str,
        op: Operation,
        permission: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pattern,
            principal: principal.into(),
            host: WILDCARD.into(),
            operation: op,
            permission,
        }
    }

    #[test]
    fn kafka_semantics_deny_wins_implied_describe_prefixes_wildcards() {
        use Operation::*;
        use PatternType::*;
        use ResourceType::Topic;
        let acls = [
            binding(
                Topic,
                "orders",
                Literal,
                "User:alice",
                Write,
                Permission::Allow,
            ),
            binding(
                Topic,
                "pay-",
                Prefixed,
                "User:alice",
                Read,
                Permission::Allow,
            ),
            binding(
                Topic,
                "pay-secret",
                Literal,
                "User:alice",
                Read,
                Permission::Deny,
            ),
            binding(Topic, "*", Literal, "User:*", Describe, Permission::Allow),
            binding(Topic, "audit", Literal, "User:bob", All, Permission::Allow),
        ];
        let index = AclIndex::new(&acls);
        let can = |p: &str, op, name: &str| {
            index
                .authorize(p, "10.0.0.1", op, Topic, name, false)
                .allowed()
        };
        assert!(can("User:alice", Write, "orders"));
        assert!(!can("User:alice", Read, "orders"));
        assert!(can("User:alice", Read, "pay-eu"));
        assert!(!can("User:alice", Read, "pay-secret"));
        assert!(!can("User:alice", Read, "pay"));
        assert!(can("User:carol", Describe, "anything"));
        assert!(!can("User:carol", Read, "anything"));
        assert!(can("User:bob", Delete, "audit"));
        assert!(can("User:bob", Describe, "audit"));
        // Groups have no bindings: closed, unless everyone is allowed then.
        assert!(
            !index
                .authorize("User:x", "h", Read, ResourceType::Group, "g", false)
                .allowed()
        );
        assert_eq!(
            index.authorize("User:x", "h", Read, ResourceType::Group, "g", true),
            Decision::AllowedNoAcl
        );
    }

    #[test]
    fn hosts_must_match() {
        let mut b = binding(
            ResourceType::Topic,
            "t",
            PatternType::Literal,
            "User:a",
            Operation::Read,
            Permission::Allow,
        );
        b.host = "10.0.0.1".into();
        let index = AclIndex::new([&b]);
        let decide = |host| {
            index.authorize(
                "User:a",
                host,
                Operation::Read,
                ResourceType::Topic,
                "t",
                false,
            )
        };
        assert!(decide("10.0.0.1").allowed());
        assert!(!decide("10.0.0.2").allowed());
    }

    #[test]
    fn filters_select_as_kafka_does() {
        let prefixed = binding(
            ResourceType::Topic,
            "pay-",
            PatternType::Prefixed,
            "User:a",
            Operation::Read,
            Permission::Allow,
        );
        let literal = binding(
            ResourceType::Topic,
            "pay-eu",
            PatternType::Literal,
            "User:a",
            Operation::Write,
            Permission::Allow,
        );
        let filter = |pattern, name: Option<&str>| AclFilter {
            resource_type: ResourceType::Topic,
            resource_name: name.map(str::to_string),
            pattern_type: pattern,
            principal: None,
            host: None,
            operation: Operation::Any,
            permission: Permission::Any,
        };
        let m = filter(PatternType::Match, Some("pay-eu"));
        assert!(m.matches(&prefixed) && m.matches(&literal));
        let l = filter(PatternType::Literal, Some("pay-eu"));
        assert!(!l.matches(&prefixed) && l.matches(&literal));
        let any = filter(PatternType::Any, Some("pay-"));
        assert!(any.matches(&prefixed) && !any.matches(&literal));
        assert!(filter(PatternType::Prefixed, None).matches(&prefixed));
        assert!(!filter(PatternType::Prefixed, None).matches(&literal));
    }

    #[test]
    fn bad_bindings_are_named() {
        let mut b = binding(
            ResourceType::Cluster,
            "x",
            PatternType::Literal,
            "User:a",
            Operation::Alter,
            Permission::Allow,
        );
        assert!(b.invalid().is_some_and(|m| m.contains("kafka-cluster")));
        b.resource_name = "kafka-cluster".into();
        assert_eq!(b.invalid(), None);
        b.principal = "alice".into();
        assert!(b.invalid().is_some());
    }
}
