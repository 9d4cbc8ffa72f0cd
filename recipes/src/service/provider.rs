//! [`ServiceProvider`]: picks one instance of a service per call, by a [`ProviderStrategy`]
//! (Curator's `ServiceProvider` with its random, round-robin and sticky strategies), skipping
//! disabled instances and those recently reported failing (Curator's `DownInstancePolicy`).

use std::collections::HashMap;
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use tokio::time::Instant;

use super::cache::ServiceCache;
use super::instance::ServiceInstance;

/// How a [`ServiceProvider`] chooses among the instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ProviderStrategy {
    /// Any instance, uniformly at random.
    #[default]
    Random,
    /// Each instance in turn.
    RoundRobin,
    /// The same instance while it is there; another (random) one when it goes.
    Sticky,
}

/// Options of a [`ServiceProvider`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProviderOptions {
    /// The strategy.
    pub strategy: ProviderStrategy,
    /// Errors ([`ServiceProvider::note_error`]) after which an instance is skipped.
    pub error_threshold: usize,
    /// How long a failing instance is skipped.
    pub down_for: Duration,
}

impl Default for ProviderOptions {
    fn default() -> Self {
        // Curator's DownInstancePolicy defaults: 2 errors, 30 seconds.
        ProviderOptions {
            strategy: ProviderStrategy::Random,
            error_threshold: 2,
            down_for: Duration::from_secs(30),
        }
    }
}

impl ProviderOptions {
    /// Sets the strategy.
    pub fn strategy(mut self, s: ProviderStrategy) -> Self {
        self.strategy = s;
        self
    }
}

#[derive(Debug, Default)]
struct PickState {
    next: usize,
    sticky: Option<String>,
    errors: HashMap<String, (usize, Instant)>,
}

/// Chooses instances of one service. See the [module docs](super).
#[derive(Debug)]
pub struct ServiceProvider {
    cache: ServiceCache,
    opts: ProviderOptions,
    state: StdMutex<PickState>,
}

impl ServiceProvider {
    pub(crate) fn new(cache: ServiceCache, opts: ProviderOptions) -> ServiceProvider {
        ServiceProvider {
            cache,
            opts,
            state: StdMutex::new(PickState::default()),
        }
    }

    /// The cache the provider picks from (to watch the instances too).
    pub fn cache(&self) -> &ServiceCache {
        &self.cache
    }

    /// The instances a pick chooses from now: enabled and not marked down.
    pub fn all_instances(&self) -> Vec<ServiceInstance> {
        let now = Instant::now();
        let Ok(mut st) = self.state.lock() else {
            return Vec::new();
        };
        st.errors
            .retain(|_, (_, since)| now < *since + self.opts.down_for);
        let down = |id: &str| {
            st.errors
                .get(id)
                .is_some_and(|(n, _)| *n >= self.opts.error_threshold)
        };
        self.cache
            .instances()
            .into_iter()
            .filter(|i| i.enabled && !down(&i.id))
            .collect()
    }

    /// One instance, or `None` when there is none to use.
    pub fn instance(&self) -> Option<ServiceInstance> {
        let live = self.all_instances();
        let mut st = self.state.lock().ok()?;
        let st = &mut *st;
        let i = pick(
            self.opts.strategy,
            &live,
            &mut st.next,
            &mut st.sticky,
            fastrand::usize,
        )?;
        Some(live[i].clone())
    }

    /// Reports that `instance` failed; after [`ProviderOptions::error_threshold`] reports it is
    /// skipped for [`ProviderOptions::down_for`].
    pub fn note_error(&self, instance: &ServiceInstance) {
        if let Ok(mut st) = self.state.lock() {
            let e = st
                .errors
                .entry(instance.id.clone())
                .or_insert((0, Instant::now()));
            e.0 += 1;
            e.1 = Instant::now();
        }
    }
}

/// The index of the instance to use; `random` draws from a range.
fn pick(
    strategy: ProviderStrategy,
    live: &[ServiceInstance],
    next: &mut usize,
    sticky: &mut Option<String>,
    random: impl Fn(std::ops::Range<usize>) -> usize,
) -> Option<usize> {
    if live.is_empty() {
        return None;
    }
    Some(match strategy {
        ProviderStrategy::Random => random(0..live.len()),
        ProviderStrategy::RoundRobin => {
            let i = *next % live.len();
            *next = next.wrapping_add(1);
            i
        }
        ProviderStrategy::Sticky => {
            if let Some(i) = sticky
                .as_ref()
                .and_then(|id| live.iter().position(|x| &x.id == id))
            {
                i
            } else {
                let i = random(0..live.len());
                *sticky = Some(live[i].id.clone());
                i
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instances(ids: &[&str]) -> Vec<ServiceInstance> {
        ids.iter().map(|id| ServiceInstance::new("s", id)).collect()
    }

    #[test]
    fn round_robin_takes_each_in_turn() {
        let live = instances(&["a", "b", "c"]);
        let (mut next, mut sticky) = (0, None);
        let got: Vec<usize> = (0..5)
            .map(|_| {
                pick(
                    ProviderStrategy::RoundRobin,
                    &live,
                    &mut next,
                    &mut sticky,
                    |_| 0,
                )
                .unwrap()
            })
            .collect();
        assert_eq!(got, [0, 1, 2, 0, 1]);
    }

    #[test]
    fn sticky_keeps_its_instance_until_it_goes() {
        let (mut next, mut sticky) = (0, None);
        let live = instances(&["a", "b", "c"]);
        let first = pick(
            ProviderStrategy::Sticky,
            &live,
            &mut next,
            &mut sticky,
            |_| 1,
        );
        assert_eq!(first, Some(1));
        let again = pick(
            ProviderStrategy::Sticky,
            &live,
            &mut next,
            &mut sticky,
            |_| 2,
        );
        assert_eq!(again, Some(1), "stays on b");
        let without_b = instances(&["a", "c"]);
        let moved = pick(
            ProviderStrategy::Sticky,
            &without_b,
            &mut next,
            &mut sticky,
            |_| 1,
        );
        assert_eq!(moved, Some(1));
        assert_eq!(sticky.as_deref(), Some("c"));
    }

    #[test]
    fn nothing_to_pick_from_is_none() {
        let (mut next, mut sticky) = (0, None);
        for s in [
            ProviderStrategy::Random,
            ProviderStrategy::RoundRobin,
            ProviderStrategy::Sticky,
        ] {
            assert_eq!(pick(s, &[], &mut next, &mut sticky, |_| 0), None);
        }
    }
}
