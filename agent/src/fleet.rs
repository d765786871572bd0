//! A fleet of agents against one catalyst-api, in virtual time. Each agent
//! is the crate's own code: the default retry delays
//! ([`RetryDelays::default`]), the one rule that turns a failed try into the
//! wait before the next ([`RetryPolicy::wait_after`]), and the
//! classification of catalyst-api's answers ([`api::classify`]). A
//! discrete-event loop plays the clock, so an hour of 3000 nodes takes a
//! second. Beside it, the shell it replaces (`curl --retry 60 --retry-delay
//! 10 --retry-all-errors`). Compiled for the crate's tests and for the
//! `fleet` example (`--features fleet`, run by `bench/fleet`): never part of
//! a release build.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt::Write as _;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use serde::Serialize;

use crate::config::RetryDelays;
use crate::peers::api::classify;
use crate::peers::retry::{Classify, RetryPolicy, Verdict};

/// Microseconds of virtual time.
type Micros = u64;

const SECOND: Micros = 1_000_000;
/// A refused connection comes back after one round trip.
const REFUSED_TOOK: Micros = 20_000;
/// An answered PUT: a round trip plus the server's work.
const ANSWER_TOOK: Micros = 50_000;
/// Arrivals are counted in bins of this width.
const BIN: Micros = 100_000;
/// The shell: `curl --retry 60 --retry-delay 10`.
const SHELL_TRIES: u32 = 61;
const SHELL_DELAY: Micros = 10 * SECOND;

/// Seconds by which the agent's last capture may follow the shell's and
/// still count as no later. Where both retry on the same 10 s cadence (an
/// overloaded catalyst-api), where recovery falls in it is luck, the same
/// for both; the medians and maxima of a few dozen runs differ by that much.
pub const TIE: f64 = 0.5;

/// One situation: who starts when, and what catalyst-api does.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Case {
    pub nodes: usize,
    /// Each node starts at a random time within this many seconds (1: one
    /// Sovereign's control planes booting together; 60: spread over a
    /// minute), after a random phase of up to 10 s to the outage's edge.
    pub window_s: u64,
    /// catalyst-api is down for this many seconds from time 0.
    pub outage_s: u64,
    /// Down means refusing connections; else answering 503.
    pub refused: bool,
    /// PUTs per second it serves (a sliding second); above that, 503.
    pub capacity: u32,
    /// Its 503s say `Retry-After: this`.
    pub retry_after_s: Option<u64>,
}

impl Case {
    pub fn describe(&self) -> String {
        let down = match (self.outage_s, self.refused) {
            (0, _) => "up".to_string(),
            (t, true) => format!("refused {t} s"),
            (t, false) => format!("503 for {t} s"),
        };
        let after = self
            .retry_after_s
            .map(|s| format!(", Retry-After {s}"))
            .unwrap_or_default();
        format!(
            "N={} {} , {down}, C={}{after}",
            self.nodes,
            if self.window_s <= 1 {
                "together"
            } else {
                "spread"
            },
            self.capacity
        )
        .replace(" ,", ",")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Who {
    Agent,
    Shell,
}

/// One run of one case.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// Seconds from recovery (from time 0 without an outage) until the last
    /// node captured; `None` when a node never did.
    pub last_s: Option<f64>,
    pub captured: usize,
    /// The most tries to arrive at catalyst-api in any 100 ms after recovery.
    pub peak_per_100ms: u32,
    /// The most in any second (ten bins) after recovery.
    pub peak_per_s: u32,
    /// Every try, refused ones included.
    pub requests: u64,
    /// Tries catalyst-api answered (each costs it work).
    pub answered: u64,
}

/// splitmix64: small, seedable, good enough to place starts and draw jitter.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), as the agent's own draw.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, max: Micros) -> Micros {
        (self.unit() * max as f64) as Micros
    }
}

enum Answer {
    Refused,
    Unavailable,
    Stored,
}

/// The model catalyst-api.
struct Server {
    case: Case,
    /// Arrival times of the PUTs stored in the last second.
    stored: VecDeque<Micros>,
    bins: Vec<u32>,
    answered: u64,
}

impl Server {
    fn arrive(&mut self, t: Micros) -> Answer {
        let down = t < self.case.outage_s * SECOND;
        if down && self.case.refused {
            return Answer::Refused;
        }
        self.answered += 1;
        if let Some(after) = t.checked_sub(self.case.outage_s * SECOND) {
            let bin = (after / BIN) as usize;
            if self.bins.len() <= bin {
                self.bins.resize(bin + 1, 0);
            }
            self.bins[bin] += 1;
        }
        if down {
            return Answer::Unavailable;
        }
        while self.stored.front().is_some_and(|&s| s + SECOND <= t) {
            self.stored.pop_front();
        }
        if self.stored.len() < self.case.capacity as usize {
            self.stored.push_back(t);
            Answer::Stored
        } else {
            Answer::Unavailable
        }
    }
}

/// The verdict the agent's own classification gives catalyst-api's 503,
/// with or without `Retry-After`.
fn overloaded(retry_after_s: Option<u64>) -> Verdict {
    let mut headers = HeaderMap::new();
    if let Some(s) = retry_after_s {
        headers.insert(RETRY_AFTER, HeaderValue::from(s));
    }
    let body = r#"{"error":"overloaded","detail":"try again later"}"#;
    match classify(StatusCode::SERVICE_UNAVAILABLE, &headers, body) {
        Ok(_) => unreachable!("a 503 is not a capture"),
        Err(e) => e.verdict(),
    }
}

/// The verdict for a refused connection, as the agent's transport sees it.
fn refused() -> Verdict {
    Verdict::transport(&std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
}

fn micros(d: Duration) -> Micros {
    d.as_micros().min(u64::MAX as u128) as Micros
}

/// One run of `case` by `who`, its randomness from `seed`.
pub fn run(case: Case, who: Who, seed: u64) -> Run {
    let mut rng = Rng(seed ^ 0x5eed_f1ee7);
    let policy: RetryPolicy = RetryPolicy::from(RetryDelays::default());
    let deadline = micros(crate::config::default_duration("deadline"));
    let verdicts = (refused(), overloaded(case.retry_after_s));
    let phase = if case.outage_s > 0 {
        rng.below(10 * SECOND)
    } else {
        0
    };
    let mut starts = Vec::with_capacity(case.nodes);
    let mut queue = BinaryHeap::with_capacity(case.nodes);
    for node in 0..case.nodes {
        let start = phase + rng.below(case.window_s * SECOND);
        starts.push(start);
        queue.push(Reverse((start, node)));
    }
    let mut tries = vec![0u32; case.nodes];
    let mut server = Server {
        case,
        stored: VecDeque::new(),
        bins: Vec::new(),
        answered: 0,
    };
    let mut requests = 0;
    let mut captured = 0;
    let mut last = 0;
    while let Some(Reverse((t, node))) = queue.pop() {
        requests += 1;
        tries[node] += 1;
        let n = tries[node];
        let (verdict, took) = match server.arrive(t) {
            Answer::Stored => {
                captured += 1;
                last = last.max(t + ANSWER_TOOK);
                continue;
            }
            Answer::Refused => (verdicts.0, REFUSED_TOOK),
            Answer::Unavailable => (verdicts.1, ANSWER_TOOK),
        };
        let Verdict::Retry(hint) = verdict else {
            unreachable!("refused and 503 are retried: {verdict:?}")
        };
        let next = match who {
            Who::Agent => {
                let elapsed = Duration::from_micros(t + took - starts[node]);
                let wait = policy.wait_after(n, &hint, elapsed, || rng.unit());
                let next = t + took + micros(wait);
                // No try starts past the deadline.
                if next > starts[node] + deadline {
                    continue;
                }
                next
            }
            Who::Shell => {
                if n >= SHELL_TRIES {
                    continue;
                }
                // curl waits the longer of --retry-delay and Retry-After.
                let told = hint.after.map(micros).unwrap_or(0);
                t + took + SHELL_DELAY.max(told)
            }
        };
        queue.push(Reverse((next, node)));
    }
    let recovery = case.outage_s * SECOND;
    Run {
        last_s: (captured == case.nodes).then(|| last.saturating_sub(recovery) as f64 / 1e6),
        captured,
        peak_per_100ms: server.bins.iter().copied().max().unwrap_or(0),
        peak_per_s: server
            .bins
            .windows(10.min(server.bins.len().max(1)))
            .map(|w| w.iter().sum())
            .max()
            .unwrap_or(0),
        requests,
        answered: server.answered,
    }
}

/// A distribution over runs: median, p99 (nearest rank) and max.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub median: f64,
    pub p99: f64,
    pub max: f64,
}

impl Spread {
    /// `f64::INFINITY` stands for "never".
    fn of(mut values: Vec<f64>) -> Spread {
        values.sort_by(f64::total_cmp);
        let rank =
            |q: f64| values[((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
        Spread {
            median: rank(0.5),
            p99: rank(0.99),
            max: rank(1.0),
        }
    }
}

/// One side of a case over its seeds.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// Seconds from recovery to the last capture (`inf`: a node never).
    pub last_s: Spread,
    /// Runs in which some node never captured.
    pub never: usize,
    pub peak_per_100ms: Spread,
    pub peak_per_s: Spread,
    pub requests: Spread,
    pub answered: Spread,
}

fn side(runs: &[Run]) -> Side {
    let of = |f: &dyn Fn(&Run) -> f64| Spread::of(runs.iter().map(f).collect());
    Side {
        last_s: of(&|r| r.last_s.unwrap_or(f64::INFINITY)),
        never: runs.iter().filter(|r| r.last_s.is_none()).count(),
        peak_per_100ms: of(&|r| r.peak_per_100ms as f64),
        peak_per_s: of(&|r| r.peak_per_s as f64),
        requests: of(&|r| r.requests as f64),
        answered: of(&|r| r.answered as f64),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub case: Case,
    pub seeds: u64,
    pub agent: Side,
    pub shell: Side,
    /// The goal (issue 21), for the median and for the worst run alike:
    /// every node captured; the agent's last capture no later than the
    /// shell's (a difference under [`TIE`] is a tie); and its arrival rate
    /// after recovery at most twice the shell's (peak per 100 ms) or at most
    /// catalyst-api's capacity (peak per second).
    pub meets_goal: bool,
}

/// Runs `case` `seeds` times for each side; seed `s` places both sides'
/// starts and the outage's edge alike.
pub fn summarise(case: Case, seeds: u64) -> Summary {
    let runs = |who| (0..seeds).map(|s| run(case, who, s)).collect::<Vec<_>>();
    let (agent, shell) = (side(&runs(Who::Agent)), side(&runs(Who::Shell)));
    let c = case.capacity as f64;
    let rate = |a: f64, a_s: f64, shell: f64| a <= 2.0 * shell || a_s <= c;
    let meets_goal = agent.never == 0
        && agent.last_s.median <= shell.last_s.median + TIE
        && agent.last_s.max <= shell.last_s.max + TIE
        && rate(
            agent.peak_per_100ms.median,
            agent.peak_per_s.median,
            shell.peak_per_100ms.median,
        )
        && rate(
            agent.peak_per_100ms.max,
            agent.peak_per_s.max,
            shell.peak_per_100ms.max,
        );
    Summary {
        case,
        seeds,
        agent,
        shell,
        meets_goal,
    }
}

/// The cases of issue 21 for `nodes`: together and spread; up, and refused
/// or overloaded for 30, 120 and 600 s; capacity 10 and 100 PUTs/s; and at
/// 100 PUTs/s the same with `Retry-After: 5` on every 503.
pub fn cases(nodes: usize) -> Vec<Case> {
    let mut out = Vec::new();
    for (capacity, retry_after_s) in [(10, None), (100, None), (100, Some(5))] {
        for window_s in [1, 60] {
            for (outage_s, refused) in [
                (0, true),
                (30, true),
                (120, true),
                (600, true),
                (30, false),
                (120, false),
                (600, false),
            ] {
                out.push(Case {
                    nodes,
                    window_s,
                    outage_s,
                    refused,
                    capacity,
                    retry_after_s,
                });
            }
        }
    }
    out
}

fn secs(v: f64) -> String {
    if v.is_infinite() {
        "never".into()
    } else if v < 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// The table `bench/fleet.md` shows.
pub fn markdown(summaries: &[Summary]) -> String {
    let mut out = String::from(
        "| case | agent: last capture after recovery, s (median / p99 / max) | shell | \
         agent: peak per 100 ms (median / max) | shell | agent: requests (median) | shell | goal |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for s in summaries {
        let last = |x: &Side| {
            format!(
                "{} / {} / {}",
                secs(x.last_s.median),
                secs(x.last_s.p99),
                secs(x.last_s.max)
            )
        };
        let peak = |x: &Side| {
            format!(
                "{} / {} ({} / {} per s)",
                x.peak_per_100ms.median,
                x.peak_per_100ms.max,
                x.peak_per_s.median,
                x.peak_per_s.max
            )
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            s.case.describe(),
            last(&s.agent),
            last(&s.shell),
            peak(&s.agent),
            peak(&s.shell),
            s.agent.requests.median,
            s.shell.requests.median,
            if s.meets_goal { "met" } else { "**missed**" }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The goal, as a test: 30 nodes, every case, as many runs as
    /// `bench/fleet` gives 30 nodes (it runs 3 to 3000). Fewer runs do not
    /// judge the worst case: one run in ~25 the agent's arrivals (a third
    /// more frequent than the shell's) bunch past C=10 in some second and a
    /// node waits one more cadence; the shell's do in about one run in 150.
    /// Over 200 runs each side's worst includes such a run.
    #[test]
    fn thirty_agents_meet_the_fleet_goal_in_every_case() {
        let missed: Vec<String> = cases(30)
            .into_iter()
            .map(|c| summarise(c, 200))
            .filter(|s| !s.meets_goal)
            .map(|s| format!("{}: {:?} against {:?}", s.case.describe(), s.agent, s.shell))
            .collect();
        assert!(missed.is_empty(), "{missed:#?}");
    }

    #[test]
    fn the_model_server_refuses_then_serves_its_capacity() {
        let case = Case {
            nodes: 0,
            window_s: 1,
            outage_s: 1,
            refused: true,
            capacity: 2,
            retry_after_s: None,
        };
        let mut server = Server {
            case,
            stored: VecDeque::new(),
            bins: Vec::new(),
            answered: 0,
        };
        assert!(matches!(server.arrive(SECOND - 1), Answer::Refused));
        assert!(matches!(server.arrive(SECOND), Answer::Stored));
        assert!(matches!(server.arrive(SECOND + 1), Answer::Stored));
        assert!(matches!(server.arrive(SECOND + 2), Answer::Unavailable));
        assert!(matches!(server.arrive(2 * SECOND), Answer::Stored));
        assert_eq!(server.bins[0], 3);
        assert_eq!(server.answered, 4);
    }

    #[test]
    fn the_shell_gives_up_after_sixty_retries() {
        // Refused for 700 s: its 61 tries span ~600 s.
        let case = Case {
            nodes: 3,
            window_s: 1,
            outage_s: 700,
            refused: true,
            capacity: 10,
            retry_after_s: None,
        };
        let shell = run(case, Who::Shell, 1);
        assert_eq!((shell.last_s, shell.requests), (None, 3 * 61));
        let agent = run(case, Who::Agent, 1);
        assert_eq!(agent.captured, 3);
    }

    #[test]
    fn the_agents_verdicts_are_its_own() {
        let Verdict::Retry(told) = overloaded(Some(5)) else {
            panic!()
        };
        assert_eq!(told.after, Some(Duration::from_secs(5)));
        assert!(told.overloaded);
        let Verdict::Retry(hint) = refused() else {
            panic!()
        };
        assert!(hint.refused);
    }
}
