//! The configurations the service decides for, by domain. Each is a sluice JSON config, the
//! very file the proxies load; its domain is its `global.domain` (default `sluice`), which
//! proxies send in every request (RLS's `domain`, the decide API's `domain`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_policy::{Policy, Rule};

/// Why the service's configuration cannot be loaded. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum DomainsError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is not a valid sluice configuration (the message `sluice check` prints).
    #[error("{file}: {message}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// The policy's one-line explanation, naming the rule and field.
        message: String,
    },
    /// Two files claim the same domain.
    #[error(
        "{second}: domain \"{domain}\" is already served by {first}; give one of them another global.domain"
    )]
    DuplicateDomain {
        /// The domain.
        domain: String,
        /// The file loaded first.
        first: PathBuf,
        /// The file loaded second.
        second: PathBuf,
    },
    /// No configuration was given.
    #[error("no configuration given: pass at least one --config FILE")]
    Empty,
}

/// One domain's configuration.
#[derive(Debug)]
pub struct Domain {
    name: String,
    file: PathBuf,
    policy: Policy,
    rules: HashMap<String, usize>,
}

impl Domain {
    /// A domain from a compiled policy (`file` is only used in messages).
    pub fn new(policy: Policy, file: PathBuf) -> Domain {
        let rules = policy
            .rules()
            .iter()
            .enumerate()
            .map(|(index, rule)| (rule.name().to_owned(), index))
            .collect();
        Domain {
            name: policy.domain().to_owned(),
            file,
            policy,
            rules,
        }
    }

    /// The domain's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file it was loaded from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Its compiled configuration.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// A rule by name, with its index in the policy. A tier's or an override's check name
    /// (`<rule>:<name>`) finds its rule.
    pub fn rule(&self, name: &str) -> Option<(usize, &Rule)> {
        let rule = name.split_once(':').map_or(name, |(rule, _)| rule);
        let index = *self.rules.get(rule)?;
        Some((index, self.policy.rules().get(index)?))
    }
}

/// Every domain the service serves.
#[derive(Debug, Clone, Default)]
pub struct Domains {
    by_name: HashMap<String, Arc<Domain>>,
}

impl Domains {
    /// Loads and compiles every file; any problem in any file is an error.
    pub fn load<P: AsRef<Path>>(files: &[P]) -> Result<Domains, DomainsError> {
        if files.is_empty() {
            return Err(DomainsError::Empty);
        }
        let mut domains = Domains::default();
        for file in files {
            let file = file.as_ref();
            let bytes = std::fs::read(file).map_err(|source| DomainsError::Read {
                file: file.to_owned(),
                source,
            })?;
            let policy = Policy::from_json(&bytes).map_err(|e| DomainsError::Invalid {
                file: file.to_owned(),
                message: e.to_string(),
            })?;
            domains.insert(Domain::new(policy, file.to_owned()))?;
        }
        Ok(domains)
    }

    /// Adds a domain; refuses a second one of the same name.
    pub fn insert(&mut self, domain: Domain) -> Result<(), DomainsError> {
        if let Some(first) = self.by_name.get(domain.name()) {
            return Err(DomainsError::DuplicateDomain {
                domain: domain.name().to_owned(),
                first: first.file().to_owned(),
                second: domain.file().to_owned(),
            });
        }
        self.by_name
            .insert(domain.name().to_owned(), Arc::new(domain));
        Ok(())
    }

    /// A domain by name.
    pub fn get(&self, name: &str) -> Option<&Arc<Domain>> {
        self.by_name.get(name)
    }

    /// Every domain's name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}
