//! The fleet simulation's runner (`bench/fleet`): every case of issue 21 for
//! 3, 30, 300 and 3000 nodes, agent and shell, several seeds each.
//!
//! `fleet OUT.json OUT.md [SEEDS]`

use std::time::Instant;

use catalyst_bootstrap::fleet::{Summary, cases, markdown, summarise};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [json, md, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: fleet OUT.json OUT.md [SEEDS]");
    };
    // Runs per case and side at 3000 nodes; smaller fleets get more (their
    // rare events, a cluster of arrivals past the capacity, show up only in
    // many runs), at most 200.
    let seeds: u64 = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(20);
    let began = Instant::now();
    let mut all: Vec<Summary> = Vec::new();
    for nodes in [3, 30, 300, 3000] {
        for case in cases(nodes) {
            let s = summarise(case, (seeds * 3000 / nodes as u64).clamp(seeds, 200));
            eprintln!(
                "{:>6.1} s  {}: agent last {:.1}/{:.1} s peak {}, shell last {:.1}/{:.1} s peak {}{}",
                began.elapsed().as_secs_f64(),
                case.describe(),
                s.agent.last_s.median,
                s.agent.last_s.max,
                s.agent.peak_per_100ms.max,
                s.shell.last_s.median,
                s.shell.last_s.max,
                s.shell.peak_per_100ms.max,
                if s.meets_goal { "" } else { "  MISSED" }
            );
            all.push(s);
        }
    }
    let missed = all.iter().filter(|s| !s.meets_goal).count();
    let out = serde_json::json!({
        "seeds_at_3000": seeds,
        "cases": all,
        "missed": missed,
    });
    // serde_json writes an infinite "never" as null.
    std::fs::write(json, serde_json::to_string_pretty(&out)? + "\n")?;
    std::fs::write(md, markdown(&all))?;
    eprintln!(
        "{} cases, {missed} missed the goal, in {:.0} s",
        all.len(),
        began.elapsed().as_secs_f64()
    );
    Ok(())
}
