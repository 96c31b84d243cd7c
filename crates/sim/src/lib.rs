//! Deterministic generator of realistic lifewatch event streams, for benches,
//! demos and tests.
//!
//! [`Simulator`] yields CloudEvents 1.0 JSON lines (SPEC section 1) in time
//! order for accounts, projects and billing disputes that follow the state
//! machines of SPEC section 2. The same [`SimulateOptions`] always give
//! byte-identical output on every platform: randomness comes from a built-in
//! xoshiro256** generator seeded with SplitMix64, and only integer arithmetic
//! decides anything.
//!
//! **What a stream looks like.** Accounts arrive every 2-38 s (20 s on
//! average) with plan free/team/enterprise (60/30/10 %) and usually a home
//! region. Most are activated within minutes; some fail onboarding and are
//! retried; a few abandon signup. Active accounts then act every few minutes
//! to a day: they request projects (free 0-3, team 1-5, enterprise 2-12, 70 %
//! in their home region), get suspended and reinstated, change plan, open
//! billing disputes and rarely close. Projects are provisioned within
//! minutes, occasionally fail and are retried, sometimes exceed and regain a
//! quota, get suspended and resumed, and about a third are deleted later.
//! Disputes are responded to and closed within days. Measured with
//! seed 42: 10.9 events per account without faults and 11.3 with faults at
//! `accounts: 1000`, 10.9 either way at `accounts: 100_000` (about 1.09
//! million events; faults add about 2 % duplicate and malformed lines on top),
//! 238 bytes per line on average.
//!
//! **Lines.** Attributes come in the order `specversion`, `id`, `source`,
//! `type`, `subject`, `time`, `datacontenttype`, `data`. Ids are UUIDv4 drawn
//! from the seeded generator; entity ids are `acc_`, `prj_` or `dsp_` and 12
//! hex digits. Sources are `cloud/accounts`, `cloud/provisioner` and
//! `cloud/billing`; the account and billing services stamp whole seconds and
//! send `datacontenttype`, the provisioner stamps milliseconds and omits it.
//! Billing omits `data` when the event has no field. Some events carry extra
//! data fields (`previous_plan`, `endpoint`, `reason`, ...), as the spec allows.
//!
//! **Without faults**, every state visit ends well before its default
//! deadline, transitions are legal, projects are only requested by active
//! accounts within their plan's limit, and at most four projects of a region
//! are in trouble at once. So the stream raises no `stuck`,
//! `illegal_transition`, `invariant_violation`, account `quota_breach` or
//! `regional_outage` incident: only `billing_dispute` (one per dispute),
//! project `quota_breach` (one per `project.quota_exceeded`, later restored),
//! and the `onboarding_failed` / `provisioning_failed` incidents of the
//! failures that are then retried successfully (and so resolve).
//!
//! **With faults**, a low but steady share of entities misbehave: stuck
//! visits in every state that has a deadline (most recover late, a few never
//! do), failures that are never retried, quotas never restored, accounts over
//! their plan's project limit, illegal transitions (out-of-order events,
//! unknown entities, events after a terminal state, duplicate creation),
//! invariant violations (projects of missing or pending accounts), one
//! regional outage burst per quarter of the stream (6-9 projects of one region
//! failing within minutes; outside bursts a region never has more than four
//! projects in trouble, so outages come only from bursts), about 1 % exact
//! duplicate lines (an event re-sent byte for byte a few events later, so
//! slightly out of time order) and about 1 % malformed lines (torn JSON,
//! missing or invalid attributes, bad subject or time, unknown types, missing
//! or mistyped data fields such as `3.0` for an integer, non-objects). A
//! malformed line carries, half the time, the id of the valid event that
//! follows it, as a corrected re-send would.
//!
//! It does not publish anything, read configuration, or model incidents:
//! judging a stream is lifewatch's job. Memory is proportional to the entities
//! in flight (accounts still acting, projects and disputes with events still to
//! come), not to the length of the stream.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::{self, Write};

use chrono::{DateTime, Datelike, Timelike, Utc};

const SEC: i64 = 1_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

const REGIONS: [&str; 5] = ["eu-west-1", "us-east-1", "us-west-2", "ap-southeast-1", "sa-east-1"];
const REGION_WEIGHTS: [u64; 5] = [30, 35, 15, 12, 8];
const PLANS: [&str; 3] = ["free", "team", "enterprise"];
const PLAN_MAX: [u32; 3] = [3, 20, 200];
/// Outside outage bursts, at most this many projects of a region are failing or stuck at once
/// (lifewatch's default outage threshold is 5).
const TROUBLE_CAP: u32 = 4;
/// At most this many projects of a region stay stuck forever.
const FOREVER_CAP: u32 = 2;
const QUOTAS: [(&str, [u32; 4]); 4] = [
    ("cpu", [16, 32, 64, 128]),
    ("memory", [64, 128, 256, 512]),
    ("storage", [500, 1000, 5000, 10000]),
    ("ips", [5, 10, 20, 50]),
];
/// Faults per entity kind, in parts per million of entities.
const ACC_FAULTS: [(&str, u64); 10] = [
    ("stuck_pending", 6000),
    ("pending_forever", 2000),
    ("failed_forever", 3000),
    ("failed_late", 3000),
    ("over_limit", 5000),
    ("dup_create", 3000),
    ("after_close", 3000),
    ("out_of_order", 2000),
    ("double_activate", 3000),
    ("early_project", 3000),
];
const PRJ_FAULTS: [(&str, u64); 12] = [
    ("stuck_requested", 2000),
    ("requested_forever", 300),
    ("stuck_provisioning", 2000),
    ("provisioning_forever", 300),
    ("failed_no_retry", 1500),
    ("failed_forever", 300),
    ("failed_late", 1000),
    ("stuck_deleting", 1500),
    ("deleting_forever", 300),
    ("quota_forever", 4000),
    ("out_of_order", 2500),
    ("after_deleted", 2500),
];
const DSP_FAULTS: [(&str, u64); 3] =
    [("late_response", 80_000), ("open_forever", 30_000), ("double_close", 40_000)];

/// Options of one simulated stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimulateOptions {
    /// Seed of the pseudo-random generator; the same options give the same bytes.
    pub seed: u64,
    /// Number of accounts created over the stream (about 11 events each).
    pub accounts: u64,
    /// Inject faults (see the crate documentation).
    pub faults: bool,
    /// Unix seconds of the first event; default 2026-11-27T00:00:00Z.
    pub start: i64,
}

impl Default for SimulateOptions {
    fn default() -> Self {
        SimulateOptions { seed: 1, accounts: 1000, faults: false, start: 1_795_737_600 }
    }
}

/// One line of the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimLine {
    /// A complete JSON line without the trailing newline.
    pub line: String,
    /// NATS subject `lifecycle.<entity type>.<entity id>.<event name>` when the line is a
    /// well-formed event, None for deliberately malformed lines.
    pub subject: Option<String>,
    /// Event id when known.
    pub id: Option<String>,
}

/// Counts of lines emitted so far, by category; their sum is the number of lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Well-formed events with a fresh id.
    pub events: u64,
    /// Byte-for-byte re-sends of an earlier event line.
    pub duplicates: u64,
    /// Deliberately malformed lines.
    pub malformed: u64,
}

/// xoshiro256** seeded with SplitMix64.
struct Rng([u64; 4]);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut split = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let z = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng([split(), split(), split(), split()])
    }
    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }
    /// Uniform in `0..n` (0 when n is 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below(hi.abs_diff(lo).saturating_add(1)) as i64
    }
    /// True with probability `p` parts per million.
    fn ppm(&mut self, p: u64) -> bool {
        self.below(1_000_000) < p
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
    fn weighted(&mut self, weights: &[u64]) -> usize {
        let mut x = self.below(weights.iter().sum());
        weights.iter().position(|&w| x < w || (x -= w, false).1).unwrap_or(0)
    }
    /// One fault drawn from a ppm table, or "" for none.
    fn fault(&mut self, table: &[(&'static str, u64)]) -> &'static str {
        let mut x = self.below(1_000_000);
        table.iter().find(|&&(_, p)| x < p || (x -= p, false).1).map_or("", |f| f.0)
    }
    fn uuid(&mut self) -> String {
        let a = (self.next_u64() & 0xFFFF_FFFF_FFFF_0FFF) | 0x4000;
        let b = (self.next_u64() & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
        let (hi, mid, ver, var, node) =
            (a >> 32, (a >> 16) & 0xFFFF, a & 0xFFFF, b >> 48, b & 0xFFFF_FFFF_FFFF);
        format!("{hi:08x}-{mid:04x}-{ver:04x}-{var:04x}-{node:012x}")
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Kind {
    #[default]
    Account,
    Project,
    Dispute,
}

impl Kind {
    fn name(self) -> &'static str {
        ["account", "project", "dispute"][self as usize]
    }
    fn source(self) -> &'static str {
        ["cloud/accounts", "cloud/provisioner", "cloud/billing"][self as usize]
    }
}

/// A scripted event (`name` after the dot, `data` object text or "" for none), or the
/// account's next action when `name` is "".
struct Step {
    delay: i64,
    name: &'static str,
    data: String,
}

enum Action {
    /// Request a project; `forced` skips the active/limit checks and never deletes it.
    Project {
        forced: bool,
    },
    OutageProject,
    Suspend,
    PlanChange,
    Dispute,
    Close {
        forced: bool,
    },
    Emit(&'static str, String),
}

#[derive(Default)]
struct Entity {
    kind: Kind,
    no: u64,
    id: String,
    queue: VecDeque<Step>,
    plan: usize,
    region: Option<usize>,
    active: bool,
    closed: bool,
    actions: VecDeque<Action>,
    /// The account of a project.
    account: Option<u64>,
    /// The event that ends this project's share of its region's trouble budget.
    trouble: Option<&'static str>,
}

impl Entity {
    fn push(&mut self, delay: i64, name: &'static str, data: impl Into<String>) {
        self.queue.push_back(Step { delay, name, data: data.into() });
    }
}

enum Task {
    Arrival(u64),
    Entity(Box<Entity>),
}

enum Cat {
    Event,
    Duplicate,
    Malformed,
}

/// An iterator over the stream's lines (each a complete JSON line without the trailing
/// newline), in time order (deliberate duplicates re-send a recent line as it was).
pub struct Simulator {
    opts: SimulateOptions,
    rng: Rng,
    /// Scheduled steps by (time in unix ms, sequence); the tasks are in `tasks` by sequence.
    heap: BinaryHeap<Reverse<(i64, u64)>>,
    tasks: HashMap<u64, Task>,
    seq: u64,
    now: i64,
    out: VecDeque<(SimLine, Cat)>,
    stats: SimStats,
    counters: [u64; 3],
    salts: [u64; 3],
    /// Live projects of each account still acting.
    live: HashMap<u64, u32>,
    trouble: [u32; 5],
    forever: [u32; 5],
    /// Events emitted so far, and lines to re-send once that count reaches theirs.
    emitted: u64,
    resend: Vec<(u64, SimLine)>,
    outage_period: u64,
    outage_region: usize,
}

/// A bijection of 48-bit numbers, so entity ids look random yet never collide.
fn scramble(n: u64, salt: u64) -> u64 {
    const MASK: u64 = (1 << 48) - 1;
    let x = n.wrapping_add(salt).wrapping_mul(0x9E37_79B9_7F4B) & MASK;
    let x = (x ^ (x >> 23)).wrapping_mul(0xD6E8_FEB8_6659) & MASK;
    x ^ (x >> 21)
}

/// RFC 3339 UTC, with milliseconds only when the instant has some.
///
/// chrono does the calendar arithmetic; the digits are written here rather
/// than with chrono's `format`, which interprets a format string per call and
/// would slow the million-event streams the benches generate. An instant
/// beyond chrono's range (about 262,000 years either side of the epoch, only
/// reachable through an absurd `start`) is written as the nearest one chrono
/// can represent, so that generation never panics.
fn fmt_time(ms: i64) -> String {
    let ms =
        ms.clamp(DateTime::<Utc>::MIN_UTC.timestamp_millis(), DateTime::<Utc>::MAX_UTC.timestamp_millis());
    let at = DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MIN_UTC);
    let (y, m, d) = (at.year(), at.month(), at.day());
    let (hh, mm, ss) = (at.hour(), at.minute(), at.second());
    let milli = ms.rem_euclid(1000);
    let frac = if milli == 0 { String::new() } else { format!(".{milli:03}") };
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}{frac}Z")
}

/// The attributes of one line, in output order; None omits one.
#[derive(Clone, Copy)]
struct Attrs<'a> {
    spec: Option<&'a str>,
    id: Option<&'a str>,
    source: Option<&'a str>,
    ty: Option<&'a str>,
    subject: Option<&'a str>,
    time: Option<&'a str>,
    dct: Option<&'a str>,
    /// Raw JSON text of `data`.
    data: Option<&'a str>,
}

fn render(a: &Attrs) -> String {
    let mut s = String::with_capacity(256);
    let fields = [
        ("specversion", a.spec),
        ("id", a.id),
        ("source", a.source),
        ("type", a.ty),
        ("subject", a.subject),
        ("time", a.time),
        ("datacontenttype", a.dct),
    ];
    for (key, value) in fields.iter().filter_map(|(k, v)| Some((k, (*v)?))) {
        s.push_str(if s.is_empty() { "{\"" } else { ",\"" });
        s.push_str(key);
        s.push_str("\":\"");
        for c in value.chars() {
            match c {
                '"' | '\\' => s.extend(['\\', c]),
                c if (c as u32) < 0x20 => s.push_str(&format!("\\u{:04x}", c as u32)),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    if let Some(d) = a.data {
        s.push_str(if s.is_empty() { "{\"data\":" } else { ",\"data\":" });
        s.push_str(d);
    }
    s.push_str(if s.is_empty() { "{}" } else { "}" });
    s
}

impl Simulator {
    /// A simulator positioned before the first line.
    pub fn new(options: SimulateOptions) -> Simulator {
        let mut rng = Rng::new(options.seed);
        let salts = [rng.next_u64(), rng.next_u64(), rng.next_u64()];
        let mut sim = Simulator {
            outage_period: options.accounts.div_ceil(4).max(1),
            outage_region: 0,
            now: options.start.saturating_mul(1000),
            opts: options,
            rng,
            heap: BinaryHeap::new(),
            tasks: HashMap::new(),
            seq: 0,
            out: VecDeque::new(),
            stats: SimStats::default(),
            counters: [0; 3],
            salts,
            live: HashMap::new(),
            trouble: [0; 5],
            forever: [0; 5],
            emitted: 0,
            resend: Vec::new(),
        };
        if sim.opts.accounts > 0 {
            sim.schedule(0, true, Task::Arrival(0));
        }
        sim
    }

    /// Counts of the lines returned so far.
    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    /// Runs `task` `delay` ms from now, rounded up to a whole second for `whole_seconds` emitters.
    fn schedule(&mut self, delay: i64, whole_seconds: bool, task: Task) {
        let mut time = self.now.saturating_add(delay.max(0));
        if whole_seconds {
            time = time.saturating_add(999).div_euclid(1000).saturating_mul(1000);
        }
        self.seq += 1;
        self.heap.push(Reverse((time, self.seq)));
        self.tasks.insert(self.seq, task);
    }

    fn dur(&mut self, lo: i64, hi: i64) -> i64 {
        self.rng.range(lo, hi)
    }

    fn new_id(&mut self, kind: Kind) -> (u64, String) {
        let i = kind as usize;
        let no = self.counters[i];
        self.counters[i] += 1;
        (no, format!("{}_{:012x}", ["acc", "prj", "dsp"][i], scramble(no, self.salts[i])))
    }

    /// Between two actions of an account: minutes to a day.
    fn gap(&mut self) -> i64 {
        match self.rng.below(100) {
            0..40 => self.dur(MIN, 30 * MIN),
            40..85 => self.dur(30 * MIN, 4 * HOUR),
            _ => self.dur(4 * HOUR, DAY),
        }
    }

    fn arrival(&mut self, k: u64) {
        self.spawn_account(None);
        if self.opts.faults {
            if k % self.outage_period == self.outage_period / 2 {
                // a different region than the previous burst
                self.outage_region = (self.outage_region + 1 + self.rng.below(4) as usize) % 5;
                self.spawn_account(Some(self.outage_region));
            }
            if self.rng.ppm(3000) {
                // an event for an entity that never existed
                let (kind, name, data) = match self.rng.below(4) {
                    0 => (Kind::Account, "suspended", r#"{"reason":"payment_overdue"}"#),
                    1 => (Kind::Project, "provisioned", "{}"),
                    2 => (Kind::Project, "deleted", "{}"),
                    _ => (Kind::Dispute, "responded", ""),
                };
                let (_, id) = self.new_id(kind);
                self.emit(kind, &id, name, data);
            }
            if self.rng.ppm(2000) {
                // project.requested naming an account that never existed
                let (_, acc) = self.new_id(Kind::Account);
                let region = self.rng.weighted(&REGION_WEIGHTS);
                self.spawn_project(None, &acc, region, false, false);
            }
        }
        if k + 1 < self.opts.accounts {
            let gap = self.dur(2 * SEC, 38 * SEC);
            self.schedule(gap, true, Task::Arrival(k + 1));
        }
    }

    /// A new account; `outage` makes it the owner of a regional outage burst in that region.
    fn spawn_account(&mut self, outage: Option<usize>) {
        let (no, id) = self.new_id(Kind::Account);
        let fault = if self.opts.faults && outage.is_none() { self.rng.fault(&ACC_FAULTS) } else { "" };
        let plan = match (outage, fault) {
            (Some(_), _) => 2,
            (_, "over_limit") => 0,
            _ => self.rng.weighted(&[60, 30, 10]),
        };
        let region = outage.or_else(|| self.rng.ppm(700_000).then(|| self.rng.weighted(&REGION_WEIGHTS)));
        let mut e = Box::new(Entity { kind: Kind::Account, no, id, plan, region, ..Entity::default() });
        let created = match region {
            Some(r) => format!(r#"{{"plan":"{}","region":"{}"}}"#, PLANS[plan], REGIONS[r]),
            None => format!(r#"{{"plan":"{}"}}"#, PLANS[plan]),
        };
        self.live.insert(no, 0);
        if fault == "out_of_order" {
            e.push(0, "activated", "");
        }
        e.push(if fault == "out_of_order" { self.dur(SEC, 5 * SEC) } else { 0 }, "created", created.clone());
        let reasons = ["kyc_rejected", "payment_method_declined", "email_unverified", "fraud_check_timeout"];
        let failed = format!(r#"{{"reason":"{}"}}"#, self.rng.pick(&reasons));
        let path = if fault.is_empty() && outage.is_none() { self.rng.below(1000) } else { 0 };
        match fault {
            "pending_forever" => return self.schedule(0, true, Task::Entity(e)),
            "failed_forever" => {
                e.push(self.dur(30 * SEC, 5 * MIN), "onboarding_failed", failed);
                return self.schedule(0, true, Task::Entity(e));
            }
            _ if path >= 975 => {
                e.push(self.dur(MIN, 12 * MIN), "closed", r#"{"reason":"abandoned_signup"}"#);
                return self.schedule(0, true, Task::Entity(e));
            }
            "out_of_order" => {}
            _ => {
                if fault == "failed_late" || path >= 905 {
                    e.push(self.dur(30 * SEC, 5 * MIN), "onboarding_failed", failed);
                    let d = if path > 0 { self.dur(MIN, 20 * MIN) } else { self.dur(35 * MIN, 2 * HOUR) };
                    e.push(d, "onboarding_retried", "");
                }
                if fault == "early_project" {
                    e.push(self.dur(5 * SEC, MIN), "", "");
                    e.actions.push_back(Action::Project { forced: true });
                }
                let d = if fault == "stuck_pending" {
                    self.dur(16 * MIN, 90 * MIN)
                } else {
                    self.dur(20 * SEC, 8 * MIN)
                };
                e.push(d, "activated", "");
            }
        }
        if fault == "double_activate" {
            e.actions.push_back(Action::Emit("activated", String::new()));
        }
        let n = match (outage, fault, plan) {
            (Some(_), _, _) => self.dur(6, 9),
            (_, "over_limit", _) => self.dur(4, 6),
            (_, _, 0) => self.rng.weighted(&[30, 40, 20, 10]) as i64,
            (_, _, 1) => self.dur(1, 5),
            _ => self.dur(2, 12),
        };
        let mut middle: Vec<Action> = (0..n)
            .map(|_| {
                if outage.is_some() {
                    Action::OutageProject
                } else {
                    Action::Project { forced: fault == "over_limit" }
                }
            })
            .collect();
        if outage.is_none() {
            for (action, p) in
                [(Action::Suspend, 50_000), (Action::PlanChange, 80_000), (Action::Dispute, 50_000)]
            {
                if self.rng.ppm(p) {
                    middle.push(action);
                }
            }
            for i in (1..middle.len()).rev() {
                middle.swap(i, self.rng.below(i as u64 + 1) as usize);
            }
        }
        e.actions.extend(middle);
        if fault == "after_close" {
            e.actions.push_back(Action::Close { forced: true });
            e.actions.push_back(Action::Emit("reinstated", String::new()));
        } else if outage.is_none() && self.rng.ppm(40_000) {
            e.actions.push_back(Action::Close { forced: false });
        }
        if fault == "dup_create" {
            e.actions.push_back(Action::Emit("created", created));
        }
        self.schedule(0, true, Task::Entity(e));
    }

    /// A new project of `account` (None: one that does not exist), requested now.
    fn spawn_project(
        &mut self,
        account: Option<u64>,
        account_id: &str,
        region: usize,
        keep: bool,
        outage: bool,
    ) {
        let (no, id) = self.new_id(Kind::Project);
        let mut e = Box::new(Entity {
            kind: Kind::Project,
            no,
            id,
            account,
            region: Some(region),
            ..Entity::default()
        });
        if let Some(count) = account.and_then(|a| self.live.get_mut(&a)) {
            *count += 1;
        }
        self.project_script(&mut e, account_id, region, keep, outage);
        self.schedule(0, false, Task::Entity(e));
    }

    /// Scripts a project's whole life; `keep` never deletes it, `outage` makes it fail in a burst.
    fn project_script(&mut self, e: &mut Entity, account_id: &str, region: usize, keep: bool, outage: bool) {
        let r = REGIONS[region];
        e.push(0, "requested", format!(r#"{{"account_id":"{account_id}","region":"{r}"}}"#));
        let mut fault = if self.opts.faults && !outage { self.rng.fault(&PRJ_FAULTS) } else { "" };
        let forever = fault.ends_with("_forever") && fault != "quota_forever";
        let troubled = forever
            || matches!(
                fault,
                "stuck_requested"
                    | "stuck_provisioning"
                    | "failed_no_retry"
                    | "failed_late"
                    | "stuck_deleting"
            );
        if troubled
            && (self.trouble[region] >= TROUBLE_CAP || (forever && self.forever[region] >= FOREVER_CAP))
        {
            fault = "";
        }
        let natural =
            !outage && fault.is_empty() && self.trouble[region] < TROUBLE_CAP && self.rng.ppm(20_000);
        if natural || (troubled && !fault.is_empty()) {
            self.trouble[region] += 1;
            if forever && !fault.is_empty() {
                self.forever[region] += 1;
            } else {
                let deleted = matches!(fault, "stuck_deleting" | "failed_no_retry");
                e.trouble = Some(if deleted { "deleted" } else { "provisioned" });
            }
        }
        let d = match fault {
            "requested_forever" => return,
            "stuck_requested" => 5 * MIN + self.dur(30 * SEC, 10 * MIN),
            _ => self.dur(SEC, 90 * SEC),
        };
        e.push(d, "provisioning_started", r#"{"attempt":1}"#);
        let retryable = match fault {
            _ if outage || natural => Some(true),
            "failed_late" => Some(true),
            "failed_forever" | "failed_no_retry" => Some(false),
            _ => None,
        };
        if let Some(retryable) = retryable {
            let errors =
                ["image_pull_failed", "network_allocation_failed", "dependency_timeout", "internal_error"];
            let error = if outage {
                format!("capacity_unavailable: {r} degraded")
            } else {
                self.rng.pick(&errors).into()
            };
            let d = if outage { self.dur(20 * SEC, 3 * MIN) } else { self.dur(10 * SEC, 5 * MIN) };
            e.push(d, "provisioning_failed", format!(r#"{{"error":"{error}","retryable":{retryable}}}"#));
            if fault == "failed_forever" {
                return;
            }
            if fault == "failed_no_retry" || (outage && self.rng.ppm(300_000)) {
                // never retried: the customer deletes it
                e.push(self.dur(40 * MIN, 2 * HOUR), "deletion_requested", "");
                return e.push(self.dur(10 * SEC, 5 * MIN), "deleted", "");
            }
            let d = match fault {
                _ if outage => self.dur(20 * MIN, 90 * MIN),
                "failed_late" => 30 * MIN + self.dur(MIN, 30 * MIN),
                _ => self.dur(30 * SEC, 5 * MIN),
            };
            e.push(d, "provisioning_started", r#"{"attempt":2}"#);
        }
        let d = match fault {
            "provisioning_forever" => return,
            "stuck_provisioning" => 15 * MIN + self.dur(30 * SEC, 15 * MIN),
            _ => self.dur(20 * SEC, 6 * MIN),
        };
        e.push(
            d,
            "provisioned",
            format!(r#"{{"region":"{r}","endpoint":"https://{}.{r}.cloud.example"}}"#, e.id),
        );
        let short_lived = matches!(fault, "stuck_deleting" | "deleting_forever");
        if !short_lived && (fault == "quota_forever" || self.rng.ppm(40_000)) {
            let (resource, limits) = self.rng.pick(&QUOTAS);
            let limit = self.rng.pick(&limits);
            let used = limit + 1 + self.rng.below(u64::from(limit / 4)) as u32;
            let data = format!(r#"{{"resource":"{resource}","limit":{limit},"used":{used}}}"#);
            e.push(self.dur(10 * MIN, 12 * HOUR), "quota_exceeded", data);
            if fault != "quota_forever" {
                e.push(
                    self.dur(5 * MIN, 6 * HOUR),
                    "quota_restored",
                    format!(r#"{{"resource":"{resource}"}}"#),
                );
            }
        }
        if fault == "out_of_order" {
            // the resume overtakes the suspension it answers
            e.push(self.dur(HOUR, 2 * DAY), "resumed", "");
            return e.push(self.dur(100, 3 * SEC), "suspended", "");
        }
        if !short_lived && self.rng.ppm(30_000) {
            e.push(self.dur(HOUR, 2 * DAY), "suspended", "");
            e.push(self.dur(10 * MIN, DAY), "resumed", "");
        }
        if short_lived || fault == "after_deleted" || (!keep && self.rng.ppm(350_000)) {
            let d = if short_lived { self.dur(5 * MIN, 2 * HOUR) } else { self.dur(HOUR, 3 * DAY) };
            e.push(d, "deletion_requested", "");
            let d = match fault {
                "deleting_forever" => return,
                "stuck_deleting" => HOUR + self.dur(MIN, 30 * MIN),
                _ => self.dur(10 * SEC, 20 * MIN),
            };
            e.push(d, "deleted", "");
            if fault == "after_deleted" {
                e.push(self.dur(5 * MIN, DAY), "resumed", "");
            }
        }
    }

    fn spawn_dispute(&mut self, account_id: &str) {
        let (no, id) = self.new_id(Kind::Dispute);
        let mut e = Box::new(Entity { kind: Kind::Dispute, no, id, ..Entity::default() });
        let amount = self.dur(500, 250_000);
        let currency = self.rng.pick(&["USD", "EUR", "GBP", "BRL", "SGD"]);
        let reason =
            self.rng.pick(&["fraudulent", "duplicate", "product_not_received", "subscription_canceled"]);
        let opened = format!(
            r#"{{"account_id":"{account_id}","amount_cents":{amount},"currency":"{currency}","reason":"{reason}"}}"#
        );
        e.push(0, "opened", opened);
        let fault = if self.opts.faults { self.rng.fault(&DSP_FAULTS) } else { "" };
        let closed = format!(r#"{{"outcome":"{}"}}"#, self.rng.pick(&["won", "lost"]));
        match fault {
            "open_forever" => {}
            _ if fault == "late_response" || self.rng.ppm(600_000) => {
                let d = if fault.is_empty() {
                    self.dur(HOUR, 3 * DAY)
                } else {
                    self.dur(5 * DAY + HOUR, 8 * DAY)
                };
                e.push(d, "responded", "");
                e.push(self.dur(DAY, 10 * DAY), "closed", closed.clone());
            }
            _ => {
                let outcome = self.rng.pick(&["accepted", "withdrawn"]);
                e.push(self.dur(2 * HOUR, 4 * DAY), "closed", format!(r#"{{"outcome":"{outcome}"}}"#));
            }
        }
        if fault == "double_close" {
            e.push(self.dur(HOUR, DAY), "closed", closed);
        }
        self.schedule(0, true, Task::Entity(e));
    }

    fn step(&mut self, mut e: Box<Entity>) {
        match e.queue.pop_front() {
            Some(Step { name: "", .. }) => self.account_action(&mut e),
            Some(step) => self.entity_event(&mut e, step.name, &step.data),
            None => {}
        }
        if e.queue.is_empty() && !e.actions.is_empty() {
            let delay = match e.actions.front() {
                Some(Action::OutageProject) => self.dur(5 * SEC, 30 * SEC),
                Some(Action::Emit(..)) if e.closed => self.dur(HOUR, DAY),
                _ => self.gap(),
            };
            e.push(delay, "", "");
        }
        match e.queue.front() {
            Some(next) => {
                let (delay, whole) = (next.delay, e.kind != Kind::Project);
                self.schedule(delay, whole, Task::Entity(e));
            }
            None if e.kind == Kind::Account => _ = self.live.remove(&e.no),
            None => self.release_trouble(&mut e, None),
        }
    }

    fn release_trouble(&mut self, e: &mut Entity, event: Option<&str>) {
        if let (Some(end), Some(region)) = (e.trouble, e.region)
            && event.is_none_or(|ev| ev == end)
        {
            e.trouble = None;
            self.trouble[region] = self.trouble[region].saturating_sub(1);
        }
    }

    fn entity_event(&mut self, e: &mut Entity, name: &'static str, data: &str) {
        self.emit(e.kind, &e.id, name, data);
        match (e.kind, name) {
            (Kind::Account, "activated" | "reinstated") => e.active = true,
            (Kind::Account, "suspended") => e.active = false,
            (Kind::Account, "closed") => {
                (e.active, e.closed) = (false, true);
                e.actions.retain(|a| matches!(a, Action::Emit(..)));
            }
            (Kind::Project, _) => {
                if name == "deletion_requested"
                    && let Some(count) = e.account.and_then(|a| self.live.get_mut(&a))
                {
                    *count = count.saturating_sub(1);
                }
                self.release_trouble(e, Some(name));
            }
            _ => {}
        }
    }

    fn account_action(&mut self, e: &mut Entity) {
        let Some(action) = e.actions.pop_front() else { return };
        let live = self.live.get(&e.no).copied().unwrap_or(0);
        let id = e.id.clone();
        match action {
            Action::Project { forced } if forced || (e.active && live < PLAN_MAX[e.plan]) => {
                let region = match e.region {
                    Some(r) if self.rng.ppm(700_000) => r,
                    _ => self.rng.weighted(&REGION_WEIGHTS),
                };
                self.spawn_project(Some(e.no), &id, region, forced, false);
            }
            Action::OutageProject => self.spawn_project(Some(e.no), &id, e.region.unwrap_or(0), false, true),
            Action::Suspend if e.active => {
                let reason =
                    self.rng.pick(&["payment_overdue", "abuse_report", "tos_violation", "customer_request"]);
                self.entity_event(e, "suspended", &format!(r#"{{"reason":"{reason}"}}"#));
                if live == 0 && self.rng.ppm(200_000) {
                    e.push(self.dur(HOUR, 3 * DAY), "closed", r#"{"reason":"suspension_unresolved"}"#);
                } else {
                    e.push(self.dur(10 * MIN, 2 * DAY), "reinstated", "");
                }
            }
            Action::PlanChange if e.active => {
                let choices: Vec<usize> = (0..3).filter(|&p| p != e.plan && PLAN_MAX[p] >= live).collect();
                if !choices.is_empty() {
                    let old = PLANS[e.plan];
                    e.plan = self.rng.pick(&choices);
                    let data = format!(r#"{{"plan":"{}","previous_plan":"{old}"}}"#, PLANS[e.plan]);
                    self.entity_event(e, "plan_changed", &data);
                }
            }
            Action::Dispute => self.spawn_dispute(&id),
            Action::Close { forced } if forced || (e.active && live == 0) => {
                self.entity_event(e, "closed", r#"{"reason":"customer_request"}"#);
            }
            Action::Emit(name, data) => self.entity_event(e, name, &data),
            _ => {}
        }
    }

    /// Queues one event line now, with the occasional malformed line before it and
    /// duplicate after it when faults are on.
    fn emit(&mut self, kind: Kind, subject: &str, name: &str, data: &str) {
        let (id, time, ty) = (self.rng.uuid(), fmt_time(self.now), format!("{}.{name}", kind.name()));
        let data = match (data, kind) {
            ("", Kind::Dispute) => None,
            ("", _) => Some("{}"),
            (d, _) => Some(d),
        };
        let attrs = Attrs {
            spec: Some("1.0"),
            id: Some(&id),
            source: Some(kind.source()),
            ty: Some(&ty),
            subject: Some(subject),
            time: Some(&time),
            dct: (kind != Kind::Project).then_some("application/json"),
            data,
        };
        if self.opts.faults && self.rng.ppm(10_000) {
            let bad = self.malformed(kind, attrs);
            self.out.push_back((bad, Cat::Malformed));
        }
        let subject = Some(format!("lifecycle.{}.{subject}.{name}", kind.name()));
        let line = SimLine { line: render(&attrs), subject, id: Some(id) };
        self.emitted += 1;
        if self.opts.faults && self.rng.ppm(10_000) {
            // re-sent byte for byte a few events later, as a redelivery after a lost ack would be
            self.resend.push((self.emitted + self.rng.below(16), line.clone()));
        }
        self.out.push_back((line, Cat::Event));
        let emitted = self.emitted;
        while let Some(i) = self.resend.iter().position(|(due, _)| *due <= emitted) {
            let (_, dup) = self.resend.swap_remove(i);
            self.out.push_back((dup, Cat::Duplicate));
        }
    }

    /// A line that breaks one rule of SPEC section 1, shaped after the real event `good`; it
    /// keeps the real event's id half the time, as a botched first send would.
    fn malformed(&mut self, kind: Kind, good: Attrs) -> SimLine {
        let fresh = self.rng.uuid();
        let mut a = good;
        if self.rng.ppm(500_000) {
            a.id = Some(&fresh);
        }
        let subject = format!("{}.retry", good.subject.unwrap_or_default());
        let time = good.time.unwrap_or_default();
        let spaced = time.replacen('T', " ", 1);
        let unknown = format!("{}.{}", kind.name(), self.rng.pick(&["exploded", "migrated", "archived"]));
        let line = match self.rng.below(10) {
            0 => {
                let full = render(&a);
                let cut = self.rng.range(10, full.len() as i64 - 5) as usize;
                return SimLine { line: full.get(..cut).unwrap_or("{").into(), subject: None, id: None };
            }
            1 => {
                match self.rng.below(4) {
                    0 => a.id = None,
                    1 => a.source = None,
                    2 => a.ty = None,
                    _ => a.time = None,
                }
                render(&a)
            }
            2 => render(&Attrs { spec: Some(self.rng.pick(&["0.3", "1", "2.0"])), ..a }),
            3 => render(&Attrs { subject: Some(self.rng.pick(&[&subject, "prj 42", "acc/7", ""])), ..a }),
            4 => {
                let bad = self.rng.pick(&[
                    time.trim_end_matches('Z'),
                    &spaced,
                    "2026-02-30T12:00:00Z",
                    "yesterday",
                ]);
                render(&Attrs { time: Some(bad), ..a })
            }
            5 => render(&Attrs { ty: Some(&unknown), ..a }),
            6 | 7 => {
                // a required data field missing, or of the wrong JSON type
                let (ty, data) = match (kind, self.rng.below(2)) {
                    (Kind::Account, 0) => ("account.created", r#"{"region":"eu-west-1"}"#),
                    (Kind::Account, _) => ("account.plan_changed", r#"{"plan":3}"#),
                    (Kind::Project, 0) => ("project.requested", r#"{"account_id":"acc_1"}"#),
                    (Kind::Project, _) => {
                        ("project.quota_exceeded", r#"{"resource":"cpu","limit":64.0,"used":80}"#)
                    }
                    (Kind::Dispute, 0) => ("dispute.closed", "{}"),
                    (Kind::Dispute, _) => {
                        ("dispute.opened", r#"{"account_id":"acc_1","amount_cents":1999.0,"currency":"USD"}"#)
                    }
                };
                render(&Attrs { ty: Some(ty), data: Some(data), ..a })
            }
            8 => {
                let line = self.rng.pick(&["[1,2]", "\"lifecycle\"", "42", "null", "true"]);
                return SimLine { line: line.into(), subject: None, id: None };
            }
            _ if self.rng.below(2) == 0 => render(&Attrs { dct: Some("text/plain"), ..a }),
            _ => render(&Attrs { id: Some(""), ..a }),
        };
        SimLine { line, subject: None, id: a.id.filter(|id| !id.is_empty()).map(str::to_string) }
    }
}

impl Iterator for Simulator {
    type Item = SimLine;

    fn next(&mut self) -> Option<SimLine> {
        loop {
            if let Some((line, cat)) = self.out.pop_front() {
                match cat {
                    Cat::Event => self.stats.events += 1,
                    Cat::Duplicate => self.stats.duplicates += 1,
                    Cat::Malformed => self.stats.malformed += 1,
                }
                return Some(line);
            }
            let Reverse((time, seq)) = self.heap.pop()?;
            self.now = time;
            match self.tasks.remove(&seq) {
                Some(Task::Arrival(k)) => self.arrival(k),
                Some(Task::Entity(e)) => self.step(e),
                None => {}
            }
        }
    }
}

/// Convenience: write the whole stream, one line per event, return stats.
pub fn generate(options: SimulateOptions, out: &mut dyn Write) -> io::Result<SimStats> {
    let mut sim = Simulator::new(options);
    let mut buf = Vec::with_capacity(1 << 16);
    for line in sim.by_ref() {
        buf.extend_from_slice(line.line.as_bytes());
        buf.push(b'\n');
        if buf.len() >= 1 << 16 {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    out.flush()?;
    Ok(sim.stats)
}
