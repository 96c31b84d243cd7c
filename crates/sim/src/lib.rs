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
//! `accounts: 1000`: about 11.0 events per account without faults and 11.6
//! with faults (so 100 000 accounts give about 1.1 million events), 232 bytes
//! per line on average.
//!
//! **Without faults**, every state visit ends well before its default
//! deadline, transitions are legal, projects are only requested by active
//! accounts within their plan's limit and at most three projects of a region
//! are failing at once: the only incidents a stream raises are
//! `billing_dispute` (one per dispute) and project `quota_breach` (one per
//! `project.quota_exceeded`).
//!
//! **With faults**, a low but steady share of entities misbehave: stuck
//! visits in every state that has a deadline (some recover late, a few never
//! do), failures that are never retried, quotas never restored, accounts over
//! their plan's project limit, illegal transitions (out-of-order events,
//! unknown entities, events after a terminal state, duplicate creation),
//! invariant violations (projects of missing or pending accounts), one
//! regional outage burst per quarter of the stream (6-9 projects of one region
//! failing within minutes), about 1 % exact duplicate lines (a recent line
//! re-sent byte for byte, so slightly out of time order) and about 1 %
//! malformed lines (torn JSON, missing or invalid attributes, unknown types,
//! invalid data, non-objects). A malformed line sometimes carries the id of the
//! valid event that follows it, as a corrected re-send would.
//!
//! It does not publish anything, read configuration, or model incidents:
//! judging a stream is lifewatch's job. Memory is proportional to the entities
//! in flight (accounts still acting, projects and disputes with events still to
//! come), not to the length of the stream.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::{self, Write};

const SEC: i64 = 1_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

const REGIONS: [&str; 5] = ["eu-west-1", "us-east-1", "us-west-2", "ap-southeast-1", "sa-east-1"];
const REGION_WEIGHTS: [u64; 5] = [30, 35, 15, 12, 8];
const PLANS: [&str; 3] = ["free", "team", "enterprise"];
const PLAN_WEIGHTS: [u64; 3] = [60, 30, 10];
const PLAN_MAX: [u32; 3] = [3, 20, 200];
/// At most this many projects of a region are failing or stuck at once outside outage bursts.
const TROUBLE_CAP: u32 = 3;
/// At most this many projects of a region stay stuck forever.
const FOREVER_CAP: u32 = 2;
const QUOTAS: [(&str, [u32; 4]); 4] = [
    ("cpu", [16, 32, 64, 128]),
    ("memory", [64, 128, 256, 512]),
    ("storage", [500, 1000, 5000, 10000]),
    ("ips", [5, 10, 20, 50]),
];

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
#[derive(Clone, Debug)]
struct Rng([u64; 4]);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut split = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
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
        for (i, &w) in weights.iter().enumerate() {
            if x < w {
                return i;
            }
            x -= w;
        }
        0
    }
    fn fault<T: Copy>(&mut self, table: &[(T, u64)]) -> Option<T> {
        let mut x = self.below(1_000_000);
        for &(f, p) in table {
            if x < p {
                return Some(f);
            }
            x -= p;
        }
        None
    }
    fn uuid(&mut self) -> String {
        let a = (self.next_u64() & 0xFFFF_FFFF_FFFF_0FFF) | 0x4000;
        let b = (self.next_u64() & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xFFFF,
            a & 0xFFFF,
            b >> 48,
            b & 0xFFFF_FFFF_FFFF
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum AccFault {
    StuckPending,
    PendingForever,
    FailedForever,
    FailedLate,
    OverLimit,
    DupCreate,
    AfterClose,
    OutOfOrder,
    DoubleActivate,
    EarlyProject,
}
const ACC_FAULTS: [(AccFault, u64); 10] = [
    (AccFault::StuckPending, 6000),
    (AccFault::PendingForever, 2000),
    (AccFault::FailedForever, 3000),
    (AccFault::FailedLate, 3000),
    (AccFault::OverLimit, 5000),
    (AccFault::DupCreate, 3000),
    (AccFault::AfterClose, 3000),
    (AccFault::OutOfOrder, 2000),
    (AccFault::DoubleActivate, 3000),
    (AccFault::EarlyProject, 3000),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum PrjFault {
    StuckRequested,
    RequestedForever,
    StuckProvisioning,
    ProvisioningForever,
    FailedNoRetry,
    FailedForever,
    FailedLate,
    StuckDeleting,
    DeletingForever,
    QuotaForever,
    OutOfOrder,
    AfterDeleted,
}
const PRJ_FAULTS: [(PrjFault, u64); 12] = [
    (PrjFault::StuckRequested, 2000),
    (PrjFault::RequestedForever, 300),
    (PrjFault::StuckProvisioning, 2000),
    (PrjFault::ProvisioningForever, 300),
    (PrjFault::FailedNoRetry, 1500),
    (PrjFault::FailedForever, 300),
    (PrjFault::FailedLate, 1000),
    (PrjFault::StuckDeleting, 1500),
    (PrjFault::DeletingForever, 300),
    (PrjFault::QuotaForever, 4000),
    (PrjFault::OutOfOrder, 2500),
    (PrjFault::AfterDeleted, 2500),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum DspFault {
    LateResponse,
    OpenForever,
    DoubleClose,
}
const DSP_FAULTS: [(DspFault, u64); 3] =
    [(DspFault::LateResponse, 80_000), (DspFault::OpenForever, 30_000), (DspFault::DoubleClose, 40_000)];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Account,
    Project,
    Dispute,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Account => "account",
            Kind::Project => "project",
            Kind::Dispute => "dispute",
        }
    }
    fn source(self) -> &'static str {
        match self {
            Kind::Account => "cloud/accounts",
            Kind::Project => "cloud/provisioner",
            Kind::Dispute => "cloud/billing",
        }
    }
}

enum StepKind {
    /// Emit this event (name after the dot, data object text or "" for none).
    Event(&'static str, String),
    /// Perform the account's next action.
    Action,
}

struct Step {
    delay: i64,
    kind: StepKind,
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
    account: Option<u64>,
    live_counted: bool,
    /// Event that ends this project's share of its region's trouble budget.
    trouble: Option<&'static str>,
}

impl Entity {
    fn new(kind: Kind, no: u64, id: String) -> Box<Entity> {
        Box::new(Entity {
            kind,
            no,
            id,
            queue: VecDeque::new(),
            plan: 0,
            region: None,
            active: false,
            closed: false,
            actions: VecDeque::new(),
            account: None,
            live_counted: false,
            trouble: None,
        })
    }
    fn push(&mut self, delay: i64, name: &'static str, data: String) {
        self.queue.push_back(Step { delay, kind: StepKind::Event(name, data) });
    }
}

enum Task {
    Arrival(u64),
    Entity(Box<Entity>),
}

struct Item {
    time: i64,
    seq: u64,
    task: Task,
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Item {
    /// Reversed, so that the max-heap pops the earliest (time, seq) first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time, other.seq).cmp(&(self.time, self.seq))
    }
}

#[derive(Clone, Copy)]
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
    heap: BinaryHeap<Item>,
    seq: u64,
    now: i64,
    out: VecDeque<(SimLine, Cat)>,
    stats: SimStats,
    counters: [u64; 3],
    salts: [u64; 3],
    /// Live projects per account still acting.
    live: HashMap<u64, u32>,
    trouble: [u32; 5],
    forever: [u32; 5],
    recent: VecDeque<SimLine>,
    outage_period: u64,
}

/// A bijection of 48-bit numbers, so entity ids look random yet never collide.
fn scramble(n: u64, salt: u64) -> u64 {
    const MASK: u64 = (1 << 48) - 1;
    let mut x = n.wrapping_add(salt) & MASK;
    x = x.wrapping_mul(0x9E37_79B9_7F4B) & MASK;
    x ^= x >> 23;
    x = x.wrapping_mul(0xD6E8_FEB8_6659) & MASK;
    x ^ (x >> 21)
}

/// RFC 3339 UTC, with milliseconds only when the instant has some.
fn fmt_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (hh, mm, ss) = (tod / 3600, tod / 60 % 60, tod % 60);
    if milli == 0 {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{milli:03}Z")
    }
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
    s.push('{');
    let fields = [
        ("specversion", a.spec),
        ("id", a.id),
        ("source", a.source),
        ("type", a.ty),
        ("subject", a.subject),
        ("time", a.time),
        ("datacontenttype", a.dct),
    ];
    for (key, value) in fields {
        if let Some(v) = value {
            if s.len() > 1 {
                s.push(',');
            }
            s.push('"');
            s.push_str(key);
            s.push_str("\":\"");
            for c in v.chars() {
                match c {
                    '"' => s.push_str("\\\""),
                    '\\' => s.push_str("\\\\"),
                    c if (c as u32) < 0x20 => s.push_str(&format!("\\u{:04x}", c as u32)),
                    c => s.push(c),
                }
            }
            s.push('"');
        }
    }
    if let Some(d) = a.data {
        if s.len() > 1 {
            s.push(',');
        }
        s.push_str("\"data\":");
        s.push_str(d);
    }
    s.push('}');
    s
}

impl Simulator {
    /// A simulator positioned before the first line.
    pub fn new(options: SimulateOptions) -> Simulator {
        let mut rng = Rng::new(options.seed);
        let salts = [rng.next_u64(), rng.next_u64(), rng.next_u64()];
        let mut sim = Simulator {
            outage_period: options.accounts.div_ceil(4).max(1),
            now: options.start.saturating_mul(1000),
            opts: options,
            rng,
            heap: BinaryHeap::new(),
            seq: 0,
            out: VecDeque::new(),
            stats: SimStats::default(),
            counters: [0; 3],
            salts,
            live: HashMap::new(),
            trouble: [0; 5],
            forever: [0; 5],
            recent: VecDeque::new(),
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

    fn schedule(&mut self, delay: i64, whole_seconds: bool, task: Task) {
        let mut time = self.now.saturating_add(delay.max(0));
        if whole_seconds {
            time = time.saturating_add(999).div_euclid(1000).saturating_mul(1000);
        }
        self.seq += 1;
        self.heap.push(Item { time, seq: self.seq, task });
    }

    fn new_id(&mut self, kind: Kind) -> (u64, String) {
        let (i, prefix) = match kind {
            Kind::Account => (0, "acc"),
            Kind::Project => (1, "prj"),
            Kind::Dispute => (2, "dsp"),
        };
        let no = self.counters[i];
        self.counters[i] += 1;
        (no, format!("{prefix}_{:012x}", scramble(no, self.salts[i])))
    }

    /// Between two actions of an account: minutes to a day.
    fn gap(&mut self) -> i64 {
        match self.rng.below(100) {
            0..40 => self.rng.range(MIN, 30 * MIN),
            40..85 => self.rng.range(30 * MIN, 4 * HOUR),
            _ => self.rng.range(4 * HOUR, DAY),
        }
    }

    fn arrival(&mut self, k: u64) {
        self.spawn_account(None);
        if self.opts.faults {
            if k % self.outage_period == self.outage_period / 2 {
                let region = self.rng.weighted(&REGION_WEIGHTS);
                self.spawn_account(Some(region));
            }
            if self.rng.ppm(3000) {
                self.stray();
            }
            if self.rng.ppm(2000) {
                // project.requested naming an account that never existed
                let (_, acc) = self.new_id(Kind::Account);
                let region = self.rng.weighted(&REGION_WEIGHTS);
                self.spawn_project(None, &acc, region, false, false);
            }
        }
        if k + 1 < self.opts.accounts {
            let gap = self.rng.range(2 * SEC, 38 * SEC);
            self.schedule(gap, true, Task::Arrival(k + 1));
        }
    }

    /// An event for an entity that never existed.
    fn stray(&mut self) {
        let (kind, name, data) = match self.rng.below(4) {
            0 => (Kind::Account, "suspended", r#"{"reason":"payment_overdue"}"#),
            1 => (Kind::Project, "provisioned", "{}"),
            2 => (Kind::Project, "deleted", "{}"),
            _ => (Kind::Dispute, "responded", ""),
        };
        let (_, id) = self.new_id(kind);
        self.emit(kind, &id, name, data);
    }

    /// A new account; `outage` makes it the owner of a regional outage burst in that region.
    fn spawn_account(&mut self, outage: Option<usize>) {
        let (no, id) = self.new_id(Kind::Account);
        let mut e = Entity::new(Kind::Account, no, id);
        let fault = if self.opts.faults && outage.is_none() { self.rng.fault(&ACC_FAULTS) } else { None };
        e.plan = if outage.is_some() { 2 } else { self.rng.weighted(&PLAN_WEIGHTS) };
        if fault == Some(AccFault::OverLimit) {
            e.plan = 0;
        }
        e.region = outage.or_else(|| self.rng.ppm(700_000).then(|| self.rng.weighted(&REGION_WEIGHTS)));
        let created = match e.region {
            Some(r) => format!(r#"{{"plan":"{}","region":"{}"}}"#, PLANS[e.plan], REGIONS[r]),
            None => format!(r#"{{"plan":"{}"}}"#, PLANS[e.plan]),
        };
        self.live.insert(no, 0);
        let activate = self.rng.range(20 * SEC, 8 * MIN);
        match fault {
            Some(AccFault::OutOfOrder) => {
                e.push(0, "activated", String::new());
                let d = self.rng.range(SEC, 5 * SEC);
                e.push(d, "created", created.clone());
            }
            _ => e.push(0, "created", created.clone()),
        }
        let failed = format!(
            r#"{{"reason":"{}"}}"#,
            self.rng.pick(&[
                "kyc_rejected",
                "payment_method_declined",
                "email_unverified",
                "fraud_check_timeout"
            ])
        );
        let path = self.rng.below(1000);
        match fault {
            Some(AccFault::OutOfOrder) => {}
            Some(AccFault::PendingForever) => return self.schedule(0, true, Task::Entity(e)),
            Some(AccFault::FailedForever) => {
                let d = self.rng.range(30 * SEC, 5 * MIN);
                e.push(d, "onboarding_failed", failed);
                return self.schedule(0, true, Task::Entity(e));
            }
            Some(AccFault::StuckPending) => {
                let d = self.rng.range(16 * MIN, 90 * MIN);
                e.push(d, "activated", String::new());
            }
            Some(AccFault::FailedLate) => {
                let (d1, d2) = (self.rng.range(30 * SEC, 5 * MIN), self.rng.range(35 * MIN, 2 * HOUR));
                e.push(d1, "onboarding_failed", failed);
                e.push(d2, "onboarding_retried", String::new());
                e.push(activate, "activated", String::new());
            }
            Some(AccFault::EarlyProject) => {
                let d = self.rng.range(5 * SEC, MIN);
                e.queue.push_back(Step { delay: d, kind: StepKind::Action });
                e.actions.push_back(Action::Project { forced: true });
                e.push(activate, "activated", String::new());
            }
            _ if outage.is_some() || path < 905 => e.push(activate, "activated", String::new()),
            _ if path < 975 => {
                let (d1, d2) = (self.rng.range(30 * SEC, 5 * MIN), self.rng.range(MIN, 20 * MIN));
                e.push(d1, "onboarding_failed", failed);
                e.push(d2, "onboarding_retried", String::new());
                e.push(activate, "activated", String::new());
            }
            _ => {
                let d = self.rng.range(MIN, 12 * MIN);
                e.push(d, "closed", r#"{"reason":"abandoned_signup"}"#.to_string());
            }
        }
        if fault == Some(AccFault::DoubleActivate) {
            e.actions.push_back(Action::Emit("activated", String::new()));
        }
        let mut middle = Vec::new();
        if outage.is_some() {
            middle.extend((0..self.rng.range(6, 9)).map(|_| Action::OutageProject));
        } else if fault == Some(AccFault::OverLimit) {
            middle.extend((0..self.rng.range(4, 6)).map(|_| Action::Project { forced: true }));
        } else {
            let n = match e.plan {
                0 => self.rng.weighted(&[30, 40, 20, 10]) as i64,
                1 => self.rng.range(1, 5),
                _ => self.rng.range(2, 12),
            };
            middle.extend((0..n).map(|_| Action::Project { forced: false }));
            if self.rng.ppm(50_000) {
                middle.push(Action::Suspend);
            }
            if self.rng.ppm(80_000) {
                middle.push(Action::PlanChange);
            }
            if self.rng.ppm(50_000) {
                middle.push(Action::Dispute);
            }
            for i in (1..middle.len()).rev() {
                middle.swap(i, self.rng.below(i as u64 + 1) as usize);
            }
        }
        e.actions.extend(middle);
        if fault == Some(AccFault::AfterClose) {
            e.actions.push_back(Action::Close { forced: true });
            e.actions.push_back(Action::Emit("reinstated", String::new()));
        } else if outage.is_none() && self.rng.ppm(40_000) {
            e.actions.push_back(Action::Close { forced: false });
        }
        if fault == Some(AccFault::DupCreate) {
            e.actions.push_back(Action::Emit("created", created));
        }
        self.schedule(0, true, Task::Entity(e));
    }

    /// A new project of `account` (None: an account that does not exist), emitting
    /// `project.requested` now.
    fn spawn_project(
        &mut self,
        account: Option<u64>,
        account_id: &str,
        region: usize,
        keep: bool,
        outage: bool,
    ) {
        let (no, id) = self.new_id(Kind::Project);
        let mut e = Entity::new(Kind::Project, no, id);
        e.account = account;
        e.region = Some(region);
        if let Some(count) = account.and_then(|a| self.live.get_mut(&a)) {
            *count += 1;
            e.live_counted = true;
        }
        self.project_script(&mut e, account_id, region, keep, outage);
        self.schedule(0, false, Task::Entity(e));
    }

    fn project_script(&mut self, e: &mut Entity, account_id: &str, region: usize, keep: bool, outage: bool) {
        use PrjFault::*;
        let r = REGIONS[region];
        e.push(0, "requested", format!(r#"{{"account_id":"{account_id}","region":"{r}"}}"#));
        let mut fault = if self.opts.faults && !outage { self.rng.fault(&PRJ_FAULTS) } else { None };
        let forever =
            matches!(fault, Some(RequestedForever | ProvisioningForever | FailedForever | DeletingForever));
        let troubled = forever
            || matches!(
                fault,
                Some(StuckRequested | StuckProvisioning | FailedNoRetry | FailedLate | StuckDeleting)
            );
        if troubled
            && (self.trouble[region] >= TROUBLE_CAP || (forever && self.forever[region] >= FOREVER_CAP))
        {
            fault = None;
        }
        let natural_fail =
            !outage && fault.is_none() && self.trouble[region] < TROUBLE_CAP && self.rng.ppm(20_000);
        if natural_fail || (troubled && fault.is_some()) {
            self.trouble[region] += 1;
            if forever {
                self.forever[region] += 1;
            } else {
                let ends = matches!(fault, Some(StuckDeleting | FailedNoRetry));
                e.trouble = Some(if ends { "deleted" } else { "provisioned" });
            }
        }
        let error = self.rng.pick(&[
            "image_pull_failed",
            "network_allocation_failed",
            "dependency_timeout",
            "internal_error",
        ]);
        let failed = |retryable: bool| format!(r#"{{"error":"{error}","retryable":{retryable}}}"#);
        let d = match fault {
            Some(RequestedForever) => return,
            Some(StuckRequested) => 5 * MIN + self.rng.range(30 * SEC, 10 * MIN),
            _ => self.rng.range(SEC, 90 * SEC),
        };
        e.push(d, "provisioning_started", r#"{"attempt":1}"#.to_string());
        let retry = r#"{"attempt":2}"#.to_string();
        if outage {
            let d = self.rng.range(20 * SEC, 3 * MIN);
            e.push(
                d,
                "provisioning_failed",
                format!(r#"{{"error":"capacity_unavailable: {r} degraded","retryable":true}}"#),
            );
            if self.rng.ppm(300_000) {
                let (d1, d2) = (self.rng.range(40 * MIN, 3 * HOUR), self.rng.range(10 * SEC, 5 * MIN));
                e.push(d1, "deletion_requested", String::new());
                return e.push(d2, "deleted", String::new());
            }
            let d = self.rng.range(20 * MIN, 90 * MIN);
            e.push(d, "provisioning_started", retry);
        } else {
            let d = self.rng.range(10 * SEC, 5 * MIN);
            match fault {
                Some(FailedForever) => return e.push(d, "provisioning_failed", failed(false)),
                Some(FailedNoRetry) => {
                    e.push(d, "provisioning_failed", failed(false));
                    let (d1, d2) = (self.rng.range(35 * MIN, 90 * MIN), self.rng.range(10 * SEC, 5 * MIN));
                    e.push(d1, "deletion_requested", String::new());
                    return e.push(d2, "deleted", String::new());
                }
                Some(FailedLate) => {
                    e.push(d, "provisioning_failed", failed(true));
                    let d = 30 * MIN + self.rng.range(MIN, 30 * MIN);
                    e.push(d, "provisioning_started", retry);
                }
                _ if natural_fail => {
                    e.push(d, "provisioning_failed", failed(true));
                    let d = self.rng.range(30 * SEC, 5 * MIN);
                    e.push(d, "provisioning_started", retry);
                }
                _ => {}
            }
        }
        let d = match fault {
            Some(ProvisioningForever) => return,
            Some(StuckProvisioning) => 15 * MIN + self.rng.range(30 * SEC, 15 * MIN),
            _ => self.rng.range(20 * SEC, 6 * MIN),
        };
        e.push(
            d,
            "provisioned",
            format!(r#"{{"region":"{r}","endpoint":"https://{}.{r}.cloud.example"}}"#, e.id),
        );
        let short_lived = matches!(fault, Some(StuckDeleting | DeletingForever));
        if !short_lived && (fault == Some(QuotaForever) || self.rng.ppm(40_000)) {
            let (resource, limits) = self.rng.pick(&QUOTAS);
            let limit = self.rng.pick(&limits);
            let used = limit + 1 + self.rng.below(u64::from(limit / 4)) as u32;
            let d = self.rng.range(10 * MIN, 12 * HOUR);
            e.push(
                d,
                "quota_exceeded",
                format!(r#"{{"resource":"{resource}","limit":{limit},"used":{used}}}"#),
            );
            if fault != Some(QuotaForever) {
                let d = self.rng.range(5 * MIN, 6 * HOUR);
                e.push(d, "quota_restored", format!(r#"{{"resource":"{resource}"}}"#));
            }
        }
        if fault == Some(OutOfOrder) {
            // resumed overtakes the suspension it answers
            let (d1, d2) = (self.rng.range(HOUR, 2 * DAY), self.rng.range(100, 3 * SEC));
            e.push(d1, "resumed", String::new());
            return e.push(d2, "suspended", String::new());
        }
        if !short_lived && self.rng.ppm(30_000) {
            let (d1, d2) = (self.rng.range(HOUR, 2 * DAY), self.rng.range(10 * MIN, DAY));
            e.push(d1, "suspended", String::new());
            e.push(d2, "resumed", String::new());
        }
        if short_lived || fault == Some(AfterDeleted) || (!keep && self.rng.ppm(350_000)) {
            let d =
                if short_lived { self.rng.range(5 * MIN, 2 * HOUR) } else { self.rng.range(HOUR, 3 * DAY) };
            e.push(d, "deletion_requested", String::new());
            let d = match fault {
                Some(DeletingForever) => return,
                Some(StuckDeleting) => HOUR + self.rng.range(MIN, 30 * MIN),
                _ => self.rng.range(10 * SEC, 20 * MIN),
            };
            e.push(d, "deleted", String::new());
            if fault == Some(AfterDeleted) {
                let d = self.rng.range(5 * MIN, DAY);
                e.push(d, "resumed", String::new());
            }
        }
    }

    fn spawn_dispute(&mut self, account_id: &str) {
        let (no, id) = self.new_id(Kind::Dispute);
        let mut e = Entity::new(Kind::Dispute, no, id);
        let amount = self.rng.range(500, 250_000);
        let currency = self.rng.pick(&["USD", "EUR", "GBP", "BRL", "SGD"]);
        let reason =
            self.rng.pick(&["fraudulent", "duplicate", "product_not_received", "subscription_canceled"]);
        e.push(
            0,
            "opened",
            format!(r#"{{"account_id":"{account_id}","amount_cents":{amount},"currency":"{currency}","reason":"{reason}"}}"#),
        );
        let fault = if self.opts.faults { self.rng.fault(&DSP_FAULTS) } else { None };
        let outcome = self.rng.pick(&["won", "lost"]);
        let closed = format!(r#"{{"outcome":"{outcome}"}}"#);
        match fault {
            Some(DspFault::OpenForever) => {}
            Some(DspFault::LateResponse) => {
                let (d1, d2) = (self.rng.range(5 * DAY + HOUR, 8 * DAY), self.rng.range(DAY, 10 * DAY));
                e.push(d1, "responded", String::new());
                e.push(d2, "closed", closed.clone());
            }
            _ if self.rng.ppm(600_000) => {
                let (d1, d2) = (self.rng.range(HOUR, 3 * DAY), self.rng.range(DAY, 10 * DAY));
                e.push(d1, "responded", String::new());
                e.push(d2, "closed", closed.clone());
            }
            _ => {
                let d = self.rng.range(2 * HOUR, 4 * DAY);
                let outcome = self.rng.pick(&["accepted", "withdrawn"]);
                e.push(d, "closed", format!(r#"{{"outcome":"{outcome}"}}"#));
            }
        }
        if fault == Some(DspFault::DoubleClose) {
            let d = self.rng.range(HOUR, DAY);
            e.push(d, "closed", closed);
        }
        self.schedule(0, true, Task::Entity(e));
    }

    fn step(&mut self, mut e: Box<Entity>) {
        if let Some(step) = e.queue.pop_front() {
            match step.kind {
                StepKind::Event(name, data) => self.entity_event(&mut e, name, &data),
                StepKind::Action => self.account_action(&mut e),
            }
        }
        if e.queue.is_empty() && !e.actions.is_empty() {
            let delay = match e.actions.front() {
                Some(Action::OutageProject) => self.rng.range(5 * SEC, 30 * SEC),
                Some(Action::Emit(..)) if e.closed => self.rng.range(HOUR, DAY),
                _ => self.gap(),
            };
            e.queue.push_back(Step { delay, kind: StepKind::Action });
        }
        match e.queue.front() {
            Some(next) => {
                let (delay, whole) = (next.delay, e.kind != Kind::Project);
                self.schedule(delay, whole, Task::Entity(e));
            }
            None => {
                if e.kind == Kind::Account {
                    self.live.remove(&e.no);
                }
                self.release_trouble(&mut e, None);
            }
        }
    }

    fn release_trouble(&mut self, e: &mut Entity, event: Option<&str>) {
        if let Some(end) = e.trouble
            && event.is_none_or(|ev| ev == end)
        {
            e.trouble = None;
            if let Some(region) = e.region {
                self.trouble[region] = self.trouble[region].saturating_sub(1);
            }
        }
    }

    fn entity_event(&mut self, e: &mut Entity, name: &'static str, data: &str) {
        self.emit(e.kind, &e.id, name, data);
        match (e.kind, name) {
            (Kind::Account, "activated" | "reinstated") => e.active = true,
            (Kind::Account, "suspended") => e.active = false,
            (Kind::Account, "closed") => {
                e.active = false;
                e.closed = true;
                e.actions.retain(|a| matches!(a, Action::Emit(..)));
            }
            (Kind::Project, _) => {
                if name == "deletion_requested" && e.live_counted {
                    e.live_counted = false;
                    if let Some(count) = e.account.and_then(|a| self.live.get_mut(&a)) {
                        *count = count.saturating_sub(1);
                    }
                }
                self.release_trouble(e, Some(name));
            }
            _ => {}
        }
    }

    fn account_action(&mut self, e: &mut Entity) {
        let Some(action) = e.actions.pop_front() else { return };
        let live = self.live.get(&e.no).copied().unwrap_or(0);
        match action {
            Action::Project { forced } => {
                if forced || (e.active && live < PLAN_MAX[e.plan]) {
                    let region = match e.region {
                        Some(r) if self.rng.ppm(700_000) => r,
                        _ => self.rng.weighted(&REGION_WEIGHTS),
                    };
                    let id = e.id.clone();
                    self.spawn_project(Some(e.no), &id, region, forced, false);
                }
            }
            Action::OutageProject => {
                let id = e.id.clone();
                self.spawn_project(Some(e.no), &id, e.region.unwrap_or(0), false, true);
            }
            Action::Suspend if e.active => {
                let reason =
                    self.rng.pick(&["payment_overdue", "abuse_report", "tos_violation", "customer_request"]);
                self.entity_event(e, "suspended", &format!(r#"{{"reason":"{reason}"}}"#));
                if live == 0 && self.rng.ppm(200_000) {
                    let d = self.rng.range(HOUR, 3 * DAY);
                    e.push(d, "closed", r#"{"reason":"suspension_unresolved"}"#.to_string());
                } else {
                    let d = self.rng.range(10 * MIN, 2 * DAY);
                    e.push(d, "reinstated", String::new());
                }
            }
            Action::PlanChange if e.active => {
                let choices: Vec<usize> = (0..3).filter(|&p| p != e.plan && PLAN_MAX[p] >= live).collect();
                if !choices.is_empty() {
                    let old = e.plan;
                    e.plan = self.rng.pick(&choices);
                    let data = format!(r#"{{"plan":"{}","previous_plan":"{}"}}"#, PLANS[e.plan], PLANS[old]);
                    self.entity_event(e, "plan_changed", &data);
                }
            }
            Action::Dispute => {
                let id = e.id.clone();
                self.spawn_dispute(&id);
            }
            Action::Close { forced } => {
                if forced || (e.active && live == 0) {
                    self.entity_event(e, "closed", r#"{"reason":"customer_request"}"#);
                }
            }
            Action::Emit(name, data) => self.entity_event(e, name, &data),
            Action::Suspend | Action::PlanChange => {}
        }
    }

    /// Queue one event line now, with the occasional malformed line before it and
    /// duplicate after it when faults are on.
    fn emit(&mut self, kind: Kind, subject: &str, name: &str, data: &str) {
        let id = self.rng.uuid();
        let time = fmt_time(self.now);
        let ty = format!("{}.{name}", kind.name());
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
        let line = SimLine {
            line: render(&attrs),
            subject: Some(format!("lifecycle.{}.{subject}.{name}", kind.name())),
            id: Some(id),
        };
        if self.opts.faults {
            if self.recent.len() >= 16 {
                self.recent.pop_front();
            }
            self.recent.push_back(line.clone());
        }
        self.out.push_back((line, Cat::Event));
        if self.opts.faults && self.rng.ppm(10_000) {
            let i = self.rng.below(self.recent.len() as u64) as usize;
            if let Some(dup) = self.recent.get(i) {
                self.out.push_back((dup.clone(), Cat::Duplicate));
            }
        }
    }

    /// A line that breaks one rule of SPEC section 1, shaped after the real event `good`.
    fn malformed(&mut self, kind: Kind, good: Attrs) -> SimLine {
        let fresh = self.rng.uuid();
        let mut a = good;
        if self.rng.ppm(500_000) {
            a.id = Some(&fresh);
        }
        let subject = format!("{}.retry", good.subject.unwrap_or_default());
        let time = good.time.unwrap_or_default();
        let time_no_offset = time.trim_end_matches('Z');
        let time_spaced = time.replacen('T', " ", 1);
        let unknown = format!("{}.{}", kind.name(), self.rng.pick(&["exploded", "migrated", "archived"]));
        let line = match self.rng.below(10) {
            0 => {
                let full = render(&a);
                let cut = self.rng.range(10, full.len() as i64 - 5) as usize;
                return SimLine { line: full.get(..cut).unwrap_or("{").to_string(), subject: None, id: None };
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
            3 => {
                let bad = self.rng.pick(&[subject.as_str(), "prj 42", "acc/7", ""]);
                render(&Attrs { subject: Some(bad), ..a })
            }
            4 => {
                let bad = self.rng.pick(&[
                    time_no_offset,
                    time_spaced.as_str(),
                    "2026-02-30T12:00:00Z",
                    "yesterday",
                ]);
                render(&Attrs { time: Some(bad), ..a })
            }
            5 => render(&Attrs { ty: Some(&unknown), ..a }),
            6 | 7 => {
                let (ty, data) = match (kind, self.rng.below(2) == 0) {
                    (Kind::Account, true) => ("account.created", r#"{"region":"eu-west-1"}"#),
                    (Kind::Account, false) => ("account.plan_changed", r#"{"plan":3}"#),
                    (Kind::Project, true) => ("project.requested", r#"{"account_id":"acc_1"}"#),
                    (Kind::Project, false) => {
                        ("project.quota_exceeded", r#"{"resource":"cpu","limit":64.0,"used":80}"#)
                    }
                    (Kind::Dispute, true) => ("dispute.closed", "{}"),
                    (Kind::Dispute, false) => {
                        ("dispute.opened", r#"{"account_id":"acc_1","amount_cents":1999.0,"currency":"USD"}"#)
                    }
                };
                render(&Attrs { ty: Some(ty), data: Some(data), ..a })
            }
            8 => {
                let line = self.rng.pick(&["[1,2]", "\"lifecycle\"", "42", "null", "true"]);
                return SimLine { line: line.to_string(), subject: None, id: None };
            }
            _ => match self.rng.below(2) {
                0 => render(&Attrs { dct: Some("text/plain"), ..a }),
                _ => render(&Attrs { id: Some(""), ..a }),
            },
        };
        let id = a.id.filter(|id| !id.is_empty()).map(str::to_string);
        SimLine { line, subject: None, id }
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
            let item = self.heap.pop()?;
            self.now = item.time;
            match item.task {
                Task::Arrival(k) => self.arrival(k),
                Task::Entity(e) => self.step(e),
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
