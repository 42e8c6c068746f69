//! Connecting to every account scope a plan configures or its state still
//! holds instances in, and listing what they run for it.

use crate::model::{Cloud, Instance, Scope};
use crate::plan::Plan;
use crate::providers::aws::{AwsConnection, AwsProvider};
use crate::providers::azure::{AzureConnection, AzureProvider, AzureVmSettings};
use crate::providers::gcp::{GcpConnection, GcpProvider};
use crate::providers::{Provider, ProviderError, RetryPolicy, WaitClock};
use futures::future::join_all;
use std::collections::{BTreeMap, BTreeSet};

/// Where the clouds are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The real clouds, through each one's standard configuration chain and
    /// the plan's endpoint overrides.
    Clouds,
    /// A gpufleet simulator at this URL, for every cloud.
    Simulator { url: String },
}

/// One connected account of a cloud.
struct Account {
    provider: Box<dyn Provider>,
    /// The account the plan configures for its cloud: creates go here.
    home: bool,
}

/// The providers one plan needs: the accounts it configures, plus every
/// account its state still knows instances in, so that those are listed
/// (and emptied) rather than forgotten.
pub struct Clouds {
    accounts: Vec<Account>,
    /// Scopes with known instances that could not be connected to, and why.
    unreachable: Vec<(Scope, String)>,
    /// Configured accounts that could not be connected to, when connected
    /// with [`HomeFailures::Record`].
    refused: Vec<ProviderError>,
}

/// What a configured account that cannot be connected to does to the connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HomeFailures {
    /// Fails it: nothing can be planned without every configured cloud.
    Fail,
    /// Is recorded, for `check` to report next to the clouds that answered.
    Record,
}

/// What one listing of every scope found.
#[derive(Debug, Default)]
pub struct Listing {
    /// Every instance the reachable scopes run for the plan, sorted.
    pub instances: Vec<Instance>,
    /// Scopes listed in full: a known instance of one of them that is not
    /// in `instances` is gone.
    pub listed: BTreeSet<Scope>,
    /// Scopes outside the plan's own configuration that could not be
    /// connected to or listed, and why.
    pub unreachable: Vec<(Scope, String)>,
}

impl Clouds {
    /// Connect to every configured account, and to every other scope where
    /// `known` (the state's instances) holds something. A configured account
    /// that fails to connect fails the whole connect; any other is recorded
    /// as unreachable, for refresh to explain.
    pub async fn connect(
        plan: &Plan,
        known: &[Instance],
        target: &Target,
        retry: RetryPolicy,
        clock: WaitClock,
        home_failures: HomeFailures,
    ) -> Result<Clouds, ProviderError> {
        let mut clouds = Clouds { accounts: Vec::new(), unreachable: Vec::new(), refused: Vec::new() };
        let add_home = |clouds: &mut Clouds, connected: Result<Box<dyn Provider>, ProviderError>| match connected {
            Ok(provider) => {
                clouds.accounts.push(Account { provider, home: true });
                Ok(())
            }
            Err(e) if home_failures == HomeFailures::Record => {
                clouds.refused.push(e);
                Ok(())
            }
            Err(e) => Err(e),
        };
        let known_scopes: BTreeSet<&Scope> = known.iter().filter_map(|i| i.scope.as_ref()).collect();

        // AWS: the plan's regions under the plan's profile are the home
        // account; every other (profile, region) the state holds instances
        // in is listed through an account of its own, so that one that
        // cannot be reached is reported, not fatal.
        let aws = plan.providers.aws.as_ref();
        let aws_connection = |profile: Option<String>| match target {
            Target::Clouds => AwsConnection {
                endpoint: aws.and_then(|a| a.endpoint.clone()),
                profile: profile.clone(),
                simulator_credentials: false,
                retry,
                account: profile,
                clock: clock.clone(),
            },
            Target::Simulator { url } => AwsConnection {
                endpoint: Some(url.clone()),
                profile: None,
                simulator_credentials: true,
                retry,
                account: profile,
                clock: clock.clone(),
            },
        };
        let home_profile = aws.and_then(|a| a.profile.clone());
        if let Some(aws) = aws {
            let provider = AwsProvider::connect(&aws.regions, &aws_connection(home_profile.clone())).await;
            clouds.accounts.push(Account { provider: Box::new(provider), home: true });
        }
        let mut leftover: BTreeMap<Option<String>, BTreeSet<String>> = BTreeMap::new();
        for scope in &known_scopes {
            let Scope::AwsRegion { region, profile } = scope else { continue };
            let home = aws.is_some_and(|a| *profile == home_profile && a.regions.contains(region));
            if !home {
                leftover.entry(profile.clone()).or_default().insert(region.clone());
            }
        }
        for (profile, regions) in leftover {
            let regions: Vec<String> = regions.into_iter().collect();
            let provider = AwsProvider::connect(&regions, &aws_connection(profile)).await;
            clouds.accounts.push(Account { provider: Box::new(provider), home: false });
        }

        let gcp = plan.providers.gcp.as_ref();
        let gcp_connection = match target {
            Target::Clouds => GcpConnection { endpoint: gcp.and_then(|g| g.endpoint.clone()), anonymous: false, retry },
            Target::Simulator { url } => GcpConnection { endpoint: Some(url.clone()), anonymous: true, retry },
        };
        if let Some(gcp) = gcp {
            let mut zones: BTreeSet<String> = gcp.zones.iter().cloned().collect();
            let home = Scope::GcpProject { project: gcp.project.clone() };
            zones.extend(known_in(known, &home, |i| i.zone.clone()));
            let zones: Vec<String> = zones.into_iter().collect();
            let provider = GcpProvider::connect(&gcp.project, &zones, &gcp_connection).await;
            add_home(&mut clouds, provider.map(|p| Box::new(p) as Box<dyn Provider>))?;
        }
        for scope in &known_scopes {
            let Scope::GcpProject { project } = scope else { continue };
            if gcp.is_some_and(|g| g.project == *project) {
                continue;
            }
            let zones: Vec<String> = known_in(known, scope, |i| i.zone.clone()).into_iter().collect();
            match GcpProvider::connect(project, &zones, &gcp_connection).await {
                Ok(provider) => clouds.accounts.push(Account { provider: Box::new(provider), home: false }),
                Err(e) => clouds.unreachable.push(((*scope).clone(), e.to_string())),
            }
        }

        let azure = plan.providers.azure.as_ref();
        let azure_connection = match target {
            Target::Clouds => AzureConnection {
                endpoint: azure.and_then(|a| a.endpoint.clone()),
                simulator_credentials: false,
                retry,
                clock: clock.clone(),
            },
            Target::Simulator { url } => AzureConnection {
                endpoint: Some(url.clone()),
                simulator_credentials: true,
                retry,
                clock: clock.clone(),
            },
        };
        if let Some(azure) = azure {
            let mut regions: BTreeSet<String> = azure.regions.iter().cloned().collect();
            let home = Scope::AzureResourceGroup {
                subscription: azure.subscription.clone(),
                resource_group: azure.resource_group.clone(),
            };
            regions.extend(known_in(known, &home, |i| Some(i.region.clone())));
            let regions: Vec<String> = regions.into_iter().collect();
            let vm = AzureVmSettings {
                subnet: azure.subnet.clone(),
                admin_username: "gpufleet".into(),
                ssh_public_key: azure.ssh_public_key.clone(),
            };
            let provider =
                AzureProvider::connect(&azure.subscription, &azure.resource_group, &regions, &azure_connection, &vm)
                    .await;
            add_home(&mut clouds, provider.map(|p| Box::new(p) as Box<dyn Provider>))?;
        }
        for scope in &known_scopes {
            let Scope::AzureResourceGroup { subscription, resource_group } = scope else { continue };
            if azure.is_some_and(|a| a.subscription == *subscription && a.resource_group == *resource_group) {
                continue;
            }
            let regions: Vec<String> = known_in(known, scope, |i| Some(i.region.clone())).into_iter().collect();
            // This account only lists and deletes; nothing is created in it.
            let vm = AzureVmSettings { subnet: None, admin_username: "gpufleet".into(), ssh_public_key: String::new() };
            match AzureProvider::connect(subscription, resource_group, &regions, &azure_connection, &vm).await {
                Ok(provider) => clouds.accounts.push(Account { provider: Box::new(provider), home: false }),
                Err(e) => clouds.unreachable.push(((*scope).clone(), e.to_string())),
            }
        }
        Ok(clouds)
    }

    /// Build from given providers, each the home account of its cloud
    /// (tests script providers this way).
    pub fn from_providers(list: Vec<Box<dyn Provider>>) -> Clouds {
        Clouds {
            accounts: list.into_iter().map(|provider| Account { provider, home: true }).collect(),
            unreachable: Vec::new(),
            refused: Vec::new(),
        }
    }

    /// The account the plan configures for `cloud`: where creates go.
    pub fn home(&self, cloud: Cloud) -> Option<&dyn Provider> {
        self.accounts.iter().find(|a| a.home && a.provider.cloud() == cloud).map(|a| a.provider.as_ref())
    }

    /// Why the plan's account of `cloud` could not be connected to, if it
    /// could not (recorded with [`HomeFailures::Record`]).
    pub fn refused(&self, cloud: Cloud) -> Option<&ProviderError> {
        self.refused.iter().find(|e| e.cloud == cloud)
    }

    /// The account that lists (and so can delete) this instance.
    pub fn holding(&self, instance: &Instance) -> Option<&dyn Provider> {
        match &instance.scope {
            Some(scope) => {
                self.accounts.iter().find(|a| a.provider.scopes().contains(scope)).map(|a| a.provider.as_ref())
            }
            None => self.home(instance.cloud),
        }
    }

    /// Everything every account runs for `plan`, listed all at once. A
    /// configured account that fails fails the listing; another account's
    /// failure is reported as unreachable, with what was already unreachable.
    pub async fn list_owned(&self, plan: &str) -> Result<Listing, ProviderError> {
        let lists = join_all(self.accounts.iter().map(|a| a.provider.list_owned(plan))).await;
        let mut listing = Listing { unreachable: self.unreachable.clone(), ..Listing::default() };
        let mut seen: Vec<(bool, Instance)> = Vec::new();
        for (account, list) in self.accounts.iter().zip(lists) {
            match list {
                Ok(instances) => {
                    seen.extend(instances.into_iter().map(|i| (account.home, i)));
                    listing.listed.extend(account.provider.scopes());
                }
                Err(e) if account.home => return Err(e),
                Err(e) => listing.unreachable.extend(account.provider.scopes().into_iter().map(|s| (s, e.to_string()))),
            }
        }
        // One instance reached through two accounts (a renamed profile for
        // the same AWS account, a resource group written in other letter
        // case) is one instance, in the plan's own account: kept, not
        // deleted as if it had left the plan.
        seen.sort_by(|(home_a, a), (home_b, b)| a.id.cmp(&b.id).then(home_b.cmp(home_a)));
        seen.dedup_by(|(_, later), (_, first)| later.id == first.id);
        listing.instances = seen.into_iter().map(|(_, i)| i).collect();
        listing.instances.sort();
        Ok(listing)
    }
}

/// What `known` instances of `scope` have in one attribute (zones, regions).
fn known_in(known: &[Instance], scope: &Scope, of: impl Fn(&Instance) -> Option<String>) -> BTreeSet<String> {
    known.iter().filter(|i| i.scope.as_ref() == Some(scope)).filter_map(of).collect()
}
