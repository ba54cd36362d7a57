//! Replays: a recorded evaluation of L ([`super::record`]) compiled to a
//! flat program over registers and run at other values of the inputs and
//! params, many points at a time (a row of points per register).
//!
//! The recording holds the operations the evaluator carried out and every
//! decision it took on the values (a branch, a domain check, a kink test,
//! the finiteness of a definition). A replay carries out the same
//! operations with the same functions in the same order, so wherever it
//! takes every decision alike its L is the evaluator's bit for bit; where a
//! point would decide otherwise (a relu that changes sides, a log whose
//! argument turns negative) the replay says so and the caller evaluates
//! that point with the evaluator, which also gives the errors their
//! diagnostics. A recording in which the evaluator read a value other than
//! by a decision (two overlapping cases compared) is not replayed at all.
//!
//! Values are computed when first needed and registers reused once a value
//! is read for the last time, so a replay holds what is live at once (for a
//! layer, a handful of registers), not every intermediate value. Every
//! element of every tensor, data included, is an input read from the point
//! being run. [`Replay::cones`] replays only what one element reaches.

use std::cmp::Ordering;
use std::sync::Arc;

use ndarray::ArrayD;

use super::double_double::Real;
use super::reverse::{
    CONSTANT_BIT, Entry, LeafEntries, LeafLayout, Op, Recorded, TapeReal, Test, apply_op,
    decode_op, encode_op,
};
use super::scalar::{Scalar, Smooth};

/// Points a cone's run evaluates at once, and the fewest a whole run is
/// split into ([`Replay::width_for`]): below this many points, reading a
/// step costs more than computing it.
pub const LANES: usize = 8;

/// Bytes a run's registers may take: half of a core's share of its level-2
/// cache, which they share with the steps streaming through and what the
/// inputs are filled from ([`budget_of`]). A layer whose inputs are read by
/// every output (x in W·x) keeps them all live, and each halving of its
/// run's width doubles what reading the steps costs a point: A2's Taylor
/// claims alone at 512² (1,043 registers, a 1 MiB L2) took 1.06 s of CPU
/// at 256 KiB, 0.80 s at 512.
fn register_budget() -> usize {
    static BUDGET: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BUDGET.get_or_init(|| budget_of(core_cache_bytes()))
}

/// Half of a core's share of its level-2 cache, if known; never less than
/// 256 KiB (what served before the cache was read).
fn budget_of(core_cache: Option<usize>) -> usize {
    const LEAST: usize = 256 << 10;
    core_cache.map_or(LEAST, |bytes| (bytes / 2).max(LEAST))
}

/// CPU 0's share of its level-2 cache, where Linux reports it: the cache's
/// size over the CPUs that share it (a cluster of small cores shares one).
fn core_cache_bytes() -> Option<usize> {
    (0..8).find_map(|index| {
        let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{index}");
        let level = std::fs::read_to_string(format!("{dir}/level")).ok()?;
        if level.trim() != "2" {
            return None;
        }
        let size = cache_size(&std::fs::read_to_string(format!("{dir}/size")).ok()?)?;
        let sharing = std::fs::read_to_string(format!("{dir}/shared_cpu_list"))
            .ok()
            .and_then(|list| cpu_count(&list))
            .unwrap_or(1);
        Some(size / sharing.max(1))
    })
}

/// How many CPUs a list as sysfs writes it names: `0`, `0-3`, `0,4`, `0-1,8-9`.
fn cpu_count(list: &str) -> Option<usize> {
    list.trim().split(',').try_fold(0usize, |count, part| {
        let n = match part.split_once('-') {
            Some((a, b)) => b
                .trim()
                .parse::<usize>()
                .ok()?
                .checked_sub(a.trim().parse::<usize>().ok()?)?
                .checked_add(1)?,
            None => {
                part.trim().parse::<usize>().ok()?;
                1
            }
        };
        count.checked_add(n)
    })
}

/// A cache size as sysfs writes it: `1024K`, `2M`, or bytes.
fn cache_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let (digits, unit) = match text.strip_suffix(['K', 'k']) {
        Some(digits) => (digits, 1 << 10),
        None => match text.strip_suffix(['M', 'm']) {
            Some(digits) => (digits, 1 << 20),
            None => (text, 1),
        },
    };
    digits.parse::<usize>().ok()?.checked_mul(unit)
}

/// A register, or a constant with `CONSTANT_BIT`.
type Src = u32;

/// A step as a run reads it; stored [`Packed`].
#[derive(Clone, Copy, Debug)]
enum Step {
    /// Input element `input` (of [`Replay::inputs`]) into a register.
    Load {
        input: u32,
        out: u32,
    },
    Op {
        op: Op,
        a: Src,
        b: Src,
        out: u32,
    },
    Order {
        a: Src,
        b: Src,
        expected: Option<Ordering>,
    },
    Finite {
        a: Src,
        expected: bool,
    },
}

/// A step in 12 bytes: a run streams every step, so their size is the
/// run's memory traffic (and a program's, its memory). `head` holds the
/// code, which names the kind (and the operation), in its top 8 bits and
/// the register written in the other 24; a power's exponent, a guard's
/// expected outcome ride in an unused field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Packed {
    head: u32,
    a: u32,
    b: u32,
}

/// Which element of which tensor each leaf entry is. The evaluator records
/// the leaves first, tensor by tensor in row-major order, so entry n is
/// found from where each tensor's run starts, without a table of every
/// leaf; a recording laid out otherwise gets the table.
enum Leaves {
    /// The entry where each tensor's leaves start, and past the last.
    Runs(Vec<usize>),
    /// (tensor, offset) per entry; `u32::MAX` for an entry that is no leaf.
    Table(Vec<(u32, u32)>),
}

impl Leaves {
    fn of(leaves: LeafEntries) -> Self {
        match leaves.layout {
            LeafLayout::Runs(starts) => Leaves::Runs(starts),
            LeafLayout::Entries(entries) => Self::table(&entries),
        }
    }

    fn table(inputs: &[ndarray::ArrayD<u32>]) -> Self {
        let mut table: Vec<(u32, u32)> = vec![];
        for (k, t) in inputs.iter().enumerate() {
            for (p, &n) in t.iter().enumerate() {
                let n = n as usize;
                if table.len() <= n {
                    table.resize(n + 1, (u32::MAX, 0));
                }
                table[n] = (k as u32, p as u32);
            }
        }
        Leaves::Table(table)
    }

    /// Leaf entries, at most.
    fn count(&self) -> usize {
        match self {
            Leaves::Runs(starts) => starts.last().copied().unwrap_or(0),
            Leaves::Table(table) => table.len(),
        }
    }

    /// The (tensor, offset) of entry `n`, if it is a leaf.
    fn element(&self, n: usize) -> Option<(u32, u32)> {
        match self {
            Leaves::Runs(starts) => {
                // The last run starting at or before n (empty tensors share
                // a start with the next).
                let k = starts.partition_point(|&s| s <= n).checked_sub(1)?;
                let end = *starts.get(k + 1)?;
                (n < end).then(|| (k as u32, (n - starts[k]) as u32))
            }
            Leaves::Table(table) => table.get(n).copied().filter(|(k, _)| *k != u32::MAX),
        }
    }
}

/// Registers a step can name (24 bits): a program that needs more values
/// alive at once is not replayed; the evaluator computes its points.
const MAX_REGISTERS: usize = 1 << 24;
const OUT_MASK: u32 = (1 << 24) - 1;

const LOAD: u8 = 0;
const ORDER: u8 = 1;
const FINITE: u8 = 2;
/// Operations are numbered from here, in the order of [`OPS`].
const FIRST_OP: u8 = 3;
impl Packed {
    fn pack(step: Step) -> Self {
        let order_code = |o: Option<Ordering>| match o {
            Some(Ordering::Less) => 0,
            Some(Ordering::Equal) => 1,
            Some(Ordering::Greater) => 2,
            None => 3,
        };
        match step {
            Step::Load { input, out } => Self::new(LOAD, input, 0, out),
            Step::Order { a, b, expected } => Self::new(ORDER, a, b, order_code(expected)),
            Step::Finite { a, expected } => Self::new(FINITE, a, u32::from(expected), 0),
            Step::Op { op, a, b, out } => {
                let (index, b) = encode_op(op, b);
                Self::new(FIRST_OP + index as u8, a, b, out)
            }
        }
    }

    /// `out` must be below [`MAX_REGISTERS`] (its high bits are the code's).
    fn new(code: u8, a: u32, b: u32, out: u32) -> Self {
        Self {
            head: (u32::from(code) << 24) | (out & OUT_MASK),
            a,
            b,
        }
    }

    fn out(self) -> u32 {
        self.head & OUT_MASK
    }

    #[inline(always)]
    fn unpack(self) -> Step {
        match (self.head >> 24) as u8 {
            LOAD => Step::Load {
                input: self.a,
                out: self.out(),
            },
            ORDER => Step::Order {
                a: self.a,
                b: self.b,
                expected: match self.out() {
                    0 => Some(Ordering::Less),
                    1 => Some(Ordering::Equal),
                    2 => Some(Ordering::Greater),
                    _ => None,
                },
            },
            FINITE => Step::Finite {
                a: self.a,
                expected: self.b != 0,
            },
            code => {
                let op = decode_op((code - FIRST_OP) as usize, self.b);
                Step::Op {
                    op,
                    a: self.a,
                    // An operation of one reads `a` alone.
                    b: if matches!(op, Op::Powi(_)) {
                        self.a
                    } else {
                        self.b
                    },
                    out: self.out(),
                }
            }
        }
    }
}

/// A recorded evaluation of L, compiled for replaying.
#[derive(Debug)]
pub struct Replay<B> {
    /// Shared by the replays of one program in several precisions
    /// ([`Replay::in_precision`]).
    steps: Arc<Vec<Packed>>,
    registers: usize,
    constants: Vec<B>,
    /// The input elements the program loads: (tensor, row-major offset).
    inputs: Arc<Vec<(u32, u32)>>,
    output: Src,
    /// The recording folded constants by operations other number types
    /// round otherwise (see [`Replay::lanes_match_evaluator`]).
    folded: bool,
    /// See [`Replay::in_precision`].
    computed_constants: bool,
    /// The recording met a kink (see [`Replay::lanes_match_evaluator`]).
    kinked: bool,
}

/// The cones of some input elements (see [`Replay::cones`]).
#[derive(Debug)]
pub struct Cones<B> {
    /// The value of every input at the drawn point, where some cone is
    /// whole (and its replays read them); else empty.
    inputs: Vec<B>,
    /// The cone each element uses: its own, or that of its first mention.
    alias: Vec<usize>,
    /// L at the drawn point.
    output: B,
    cones: Vec<Cone<B>>,
}

/// The steps one element reaches, in order, and the step that produces L
/// if L is among them.
#[derive(Debug)]
struct Cone<B> {
    steps: Vec<ConeStep<B>>,
    output: Option<u32>,
    /// The element reaches more of the program than a cone is worth (a
    /// scalar every output reads): a whole run serves it better.
    whole: bool,
    /// The input the element is loaded as, if the program reads it.
    input: Option<u32>,
}

impl<B> Default for Cone<B> {
    fn default() -> Self {
        Self {
            steps: vec![],
            output: None,
            whole: false,
            input: None,
        }
    }
}

/// A step of a cone with its operands: values the moved element reaches
/// (the step of the cone that produces them) or values it does not (as at
/// the drawn point, kept here).
#[derive(Clone, Copy, Debug)]
struct ConeStep<B> {
    step: u32,
    a: Operand<B>,
    b: Operand<B>,
}

#[derive(Clone, Copy, Debug)]
enum Operand<B> {
    Cone(u32),
    Value(B),
}

impl<B> Cone<B> {
    fn push(&mut self, step: ConeStep<B>, limit: usize) {
        if self.whole {
            return;
        }
        if self.steps.len() >= limit {
            self.whole = true;
            self.steps = Vec::new();
            return;
        }
        self.steps.push(step);
    }
}

/// A cone beyond this fraction of the program's steps is run as a whole.
const CONE_FRACTION: usize = 4;

/// No producer: an operand a step does not read.
const NONE: u32 = u32::MAX;

impl<B: TapeReal> Replay<B> {
    /// Compiles a recording; `None` where the evaluator read a recorded
    /// value without a decision a replay could check.
    ///
    /// The operations are pure and a guard only marks its lane, so any
    /// order that computes operands first gives the same values. The
    /// program computes each value when it is first needed (depth first
    /// from L), loads each input element then, and checks each guard as
    /// soon as its operands are there: a layer's outputs are then summed
    /// into L as they are made, and what is live at once is a handful of
    /// registers rather than every output, which keeps a run in cache.
    pub fn compile(recorded: Recorded<B>) -> Option<Self> {
        let tape = recorded.tape;
        if tape.unguarded {
            return None;
        }
        let (folded, computed_constants) = (tape.folded, tape.computed_constants);
        let kinked = recorded.kinks.met > 0;
        drop(tape.values);
        let mut entries = tape.entries;
        let len = entries.len();
        let is_entry = |x: u32| x & CONSTANT_BIT == 0;
        let operands = |e: &Entry| -> [Option<u32>; 2] {
            let op = e.op();
            if op == Op::Leaf {
                return [None, None];
            }
            let a = is_entry(e.a).then_some(e.a);
            let b = (op.is_binary() && is_entry(e.b()) && e.b() != e.a).then_some(e.b());
            [a, b]
        };
        let guard_operands = |t: &Test| -> [Option<u32>; 2] {
            match *t {
                Test::Order { a, b, .. } => [
                    is_entry(a).then_some(a),
                    (is_entry(b) && b != a).then_some(b),
                ],
                Test::Finite { a, .. } => [is_entry(a).then_some(a), None],
            }
        };
        // The guards waiting on each entry (CSR), and how many operands
        // each still waits for.
        let guards = tape.guards;
        // Without guards (most layers) there is nothing to wait for.
        let csr_len = if guards.is_empty() { 0 } else { len + 1 };
        let mut waiting_start = vec![0u32; csr_len];
        let mut pending: Vec<u8> = Vec::with_capacity(guards.len());
        for g in &guards {
            let ops = guard_operands(&g.test);
            pending.push(ops.iter().flatten().count() as u8);
            for x in ops.into_iter().flatten() {
                waiting_start[x as usize + 1] += 1;
            }
        }
        for n in 0..csr_len.saturating_sub(1) {
            waiting_start[n + 1] += waiting_start[n];
        }
        let mut waiting = vec![0u32; waiting_start.last().map_or(0, |&w| w as usize)];
        let mut fill = waiting_start.clone();
        for (i, g) in guards.iter().enumerate() {
            for x in guard_operands(&g.test).into_iter().flatten() {
                waiting[fill[x as usize] as usize] = i as u32;
                fill[x as usize] += 1;
            }
        }
        drop(fill);
        // The schedule: entries (as `n`) and guards (as `CONSTANT_BIT | i`),
        // each in the `a` of the slot its step will take: the program is
        // then written over its schedule, and the two are never held apart.
        let mut steps: Vec<Packed> = Vec::with_capacity(len + guards.len());
        let scheduled = |item: u32| Packed {
            head: 0,
            a: item,
            b: 0,
        };
        let mut emitted = vec![false; len];
        let mut stack: Vec<u32> = vec![];
        let mut visit = |root: u32,
                         schedule: &mut Vec<Packed>,
                         emitted: &mut Vec<bool>,
                         pending: &mut Vec<u8>| {
            if emitted[root as usize] {
                return;
            }
            stack.push(root);
            while let Some(&n) = stack.last() {
                if emitted[n as usize] {
                    stack.pop();
                    continue;
                }
                let next = operands(&entries[n as usize])
                    .into_iter()
                    .flatten()
                    .find(|&x| !emitted[x as usize]);
                if let Some(x) = next {
                    stack.push(x);
                    continue;
                }
                stack.pop();
                emitted[n as usize] = true;
                schedule.push(scheduled(n));
                let (from, to) = match waiting_start.get(n as usize..n as usize + 2) {
                    Some(&[from, to]) => (from as usize, to as usize),
                    _ => (0, 0),
                };
                for &g in &waiting[from..to] {
                    pending[g as usize] -= 1;
                    if pending[g as usize] == 0 {
                        schedule.push(scheduled(g | CONSTANT_BIT));
                    }
                }
            }
        };
        if is_entry(recorded.output) && (recorded.output as usize) < len {
            visit(recorded.output, &mut steps, &mut emitted, &mut pending);
        }
        // Decisions on values L does not read (the finiteness of every
        // element of a definition) are checked too.
        for g in &guards {
            for x in guard_operands(&g.test).into_iter().flatten() {
                visit(x, &mut steps, &mut emitted, &mut pending);
            }
        }
        // The schedule is made: what served it goes before the rest is built.
        drop((emitted, pending, waiting, waiting_start));
        // Which reads are an entry's last (bit i of a slot's `head`: its
        // i-th operand), found walking the schedule backwards: a bit per
        // read rather than a position per entry. The output is never freed.
        let reads_at = |item: u32| {
            if item & CONSTANT_BIT != 0 {
                guard_operands(&guards[(item & !CONSTANT_BIT) as usize].test)
            } else {
                operands(&entries[item as usize])
            }
        };
        {
            let mut seen = vec![false; len];
            if is_entry(recorded.output)
                && let Some(s) = seen.get_mut(recorded.output as usize)
            {
                *s = true;
            }
            for slot in steps.iter_mut().rev() {
                for (i, x) in reads_at(slot.a).into_iter().enumerate() {
                    if let Some(x) = x
                        && !std::mem::replace(&mut seen[x as usize], true)
                    {
                        slot.head |= 1 << i;
                    }
                }
            }
        }
        let leaves = Leaves::of(recorded.leaves);
        // Once its step is made, an entry is read only as an operand, for
        // its register: it then holds its register in `a` (a map from
        // entries to registers would take 4 bytes an entry more).
        let register_of = |entries: &[Entry], x: u32| {
            if is_entry(x) {
                entries[x as usize].a
            } else {
                x
            }
        };
        let mut free: Vec<u32> = vec![];
        let mut registers = 0usize;
        let mut inputs = Vec::with_capacity(leaves.count());
        // Each slot's step is written at or before it (a leaf no input
        // names takes none), after the slot is read.
        let mut written = 0;
        for at in 0..steps.len() {
            let Packed {
                head: flags,
                a: item,
                ..
            } = steps[at];
            let mut write = |step: Step| {
                steps[written] = Packed::pack(step);
                written += 1;
            };
            let (step, reads) = if item & CONSTANT_BIT != 0 {
                let g = &guards[(item & !CONSTANT_BIT) as usize];
                let step = match g.test {
                    Test::Order { a, b, expected } => Step::Order {
                        a: register_of(&entries, a),
                        b: register_of(&entries, b),
                        expected,
                    },
                    Test::Finite { a, expected } => Step::Finite {
                        a: register_of(&entries, a),
                        expected,
                    },
                };
                (Some(step), guard_operands(&g.test))
            } else {
                let e = &entries[item as usize];
                (None, operands(e))
            };
            // Operands read for the last time free their registers first:
            // a lane's operands are read before its result is written.
            let (a, b) = if item & CONSTANT_BIT == 0 {
                let e = entries[item as usize];
                (register_of(&entries, e.a), register_of(&entries, e.b()))
            } else {
                (0, 0)
            };
            for (i, x) in reads.into_iter().enumerate() {
                if let Some(x) = x
                    && flags & (1 << i) != 0
                {
                    free.push(register_of(&entries, x));
                }
            }
            if let Some(step) = step {
                write(step);
                continue;
            }
            let n = item as usize;
            let out = free.pop().unwrap_or_else(|| {
                registers += 1;
                (registers - 1) as u32
            });
            let e = entries[n];
            entries[n].a = out;
            if e.op() == Op::Leaf {
                if let Some((k, p)) = leaves.element(n) {
                    inputs.push((k, p));
                    write(Step::Load {
                        input: (inputs.len() - 1) as u32,
                        out,
                    });
                }
            } else {
                write(Step::Op {
                    op: e.op(),
                    a,
                    b,
                    out,
                });
            }
        }
        steps.truncate(written);
        // The schedule's slots past the program (leaves no input names)
        // are given back.
        steps.shrink_to_fit();
        if registers > MAX_REGISTERS {
            return None;
        }
        let output = register_of(&entries, recorded.output);
        Some(Self {
            steps: Arc::new(steps),
            registers,
            constants: tape.constants,
            inputs: Arc::new(inputs),
            output,
            folded,
            computed_constants,
            kinked,
        })
    }

    /// The same program with its constants in precision `C`, sharing the
    /// steps: what compiling a recording in `C` at the same decisions
    /// would give. The evaluator is generic over the number type, so with
    /// the same decisions it carries out the same operations in either
    /// precision, and each constant is `C::of` of the f64 it was given, as
    /// `B`'s is. Not where a constant was computed in `B` (a fold, π): `C`
    /// would compute it, not round `B`'s. A point where `C`'s values decide
    /// otherwise is declined by the guards, as in any replay.
    pub fn in_precision<C: TapeReal>(&self) -> Option<Replay<C>> {
        if self.computed_constants {
            return None;
        }
        Some(Replay {
            steps: self.steps.clone(),
            registers: self.registers,
            constants: self.constants.iter().map(|c| C::of(c.value())).collect(),
            inputs: self.inputs.clone(),
            output: self.output,
            folded: self.folded,
            computed_constants: false,
            kinked: self.kinked,
        })
    }

    /// L at each point (every tensor's values, as f64), or `None` where the
    /// point takes a decision the recording did not.
    pub fn losses(&self, points: &[&[ArrayD<f64>]]) -> Vec<Option<B>> {
        let slices: Vec<Vec<&[f64]>> = points
            .iter()
            .map(|p| {
                p.iter()
                    .map(|a| a.as_slice_memory_order().unwrap_or(&[]))
                    .collect()
            })
            .collect();
        let mut out = Vec::with_capacity(points.len());
        for start in (0..points.len()).step_by(LANES) {
            let lanes = (points.len() - start).min(LANES);
            out.extend(self.run_with(lanes, |l, k, p| {
                slices
                    .get(start + l)
                    .and_then(|s| s.get(k))
                    .and_then(|t| t.get(p))
                    .copied()
                    .unwrap_or(f64::NAN)
            }));
        }
        out
    }

    /// L at `lanes` points in one run, `input(lane, tensor, offset)`
    /// giving each input element's value (rounded to `B` here).
    pub fn run_with(
        &self,
        lanes: usize,
        input_of: impl Fn(usize, usize, usize) -> f64,
    ) -> Vec<Option<B>> {
        self.run_rows(lanes, |(k, p), row| {
            for (l, slot) in row.iter_mut().enumerate() {
                *slot = B::of(input_of(l, k, p));
            }
        })
    }

    /// L at `width` points in one run: `fill((tensor, offset), row)` writes
    /// that input element's value at every point. A step works on every
    /// point in a tight loop, so the cost of reading a step is shared by
    /// all of them; the caller picks `width` to keep the
    /// [`Replay::registers`] rows in cache ([`Replay::width_for`]).
    pub fn run_rows(
        &self,
        width: usize,
        fill: impl Fn((usize, usize), &mut [B]),
    ) -> Vec<Option<B>> {
        self.run_lanes(width, |c| c, fill)
    }

    /// Whether a run over another number type ([`Replay::run_lanes`])
    /// computes what the evaluator computes over it: not where the
    /// recording folded constants by a division, a power or a function,
    /// which that type may round otherwise (num-dual divides as
    /// `a · (1/b)`); the constant is `B`'s. Nor where the recording met a
    /// kink (a tie, relu at 0): the evaluator over dual numbers picks the
    /// branch there by their tangents, the recording holds the branch the
    /// plain values took.
    pub fn lanes_match_evaluator(&self) -> bool {
        !self.folded && !self.kinked
    }

    /// A run whose lanes hold another number type `V` (a hyper-dual
    /// number, say): the recording's operations on `V`, with its constants
    /// lifted by `constant` and its decisions checked on `V`'s values.
    /// What the evaluator computes over `V` with the same operations is
    /// then computed here in one pass over the program. `fill((tensor,
    /// offset), row)` writes an input element's value at every lane.
    pub fn run_lanes<V: Real>(
        &self,
        width: usize,
        constant: impl Fn(B) -> V,
        fill: impl Fn((usize, usize), &mut [V]),
    ) -> Vec<Option<V>> {
        self.run_lanes_by_input(width, constant, |input, row| {
            if let Some(&(k, p)) = self.inputs.get(input as usize) {
                fill((k as usize, p as usize), row);
            }
        })
    }

    /// [`Replay::run_lanes`] with inputs named by their index in
    /// [`Replay::inputs`].
    fn run_lanes_by_input<V: Real>(
        &self,
        width: usize,
        constant: impl Fn(B) -> V,
        fill: impl Fn(u32, &mut [V]),
    ) -> Vec<Option<V>> {
        // A few points: registers of a fixed number of lanes, whose steps
        // the compiler unrolls (a row's loop costs more than its work there).
        match width {
            1 => return self.run_fixed::<1, V>(width, constant, fill),
            2 => return self.run_fixed::<2, V>(width, constant, fill),
            3 | 4 => return self.run_fixed::<4, V>(width, constant, fill),
            5..=LANES => return self.run_fixed::<LANES, V>(width, constant, fill),
            _ => {}
        }
        let zero = V::of(0.0);
        let constants: Vec<V> = self.constants.iter().map(|&c| constant(c)).collect();
        let constant = |x: Src| {
            constants
                .get((x & !CONSTANT_BIT) as usize)
                .copied()
                .unwrap_or(zero)
        };
        // One row of `width` values per register, in one block.
        let mut regs: Vec<V> = vec![zero; self.registers * width];
        let mut valid = vec![true; width];
        for step in self.steps.iter() {
            match step.unpack() {
                Step::Load { input, out } => {
                    let at = out as usize * width;
                    if let Some(row) = regs.get_mut(at..at + width) {
                        fill(input, row);
                    }
                }
                Step::Op { op, a, b, out } => {
                    let (row, a, b) = operands(&mut regs, width, out, a, b, constant);
                    let b = if op.is_binary() { b } else { Arg::Scalar(zero) };
                    apply_rows(op, row, a, b);
                }
                guard @ Step::Order { a, b, .. } => {
                    let (a, b) = (
                        read(&regs, width, a, constant),
                        read(&regs, width, b, constant),
                    );
                    check_rows(guard, &a, &b, &mut valid);
                }
                guard @ Step::Finite { a, .. } => {
                    let a = read(&regs, width, a, constant);
                    check_rows(guard, &a, &a, &mut valid);
                }
            }
        }
        let out = read(&regs, width, self.output, constant);
        (0..width).map(|l| valid[l].then(|| out.at(l))).collect()
    }

    /// [`Replay::run_lanes_by_input`] for `width <= W` points, a register
    /// being `W` lanes (those past `width` compute what they are given and
    /// are not read). Each lane carries out the same operations in the same
    /// order as a row's: the values are the same.
    fn run_fixed<const W: usize, V: Real>(
        &self,
        width: usize,
        constant: impl Fn(B) -> V,
        fill: impl Fn(u32, &mut [V]),
    ) -> Vec<Option<V>> {
        let zero = V::of(0.0);
        let constants: Vec<[V; W]> = self.constants.iter().map(|&c| [constant(c); W]).collect();
        let get = |regs: &[[V; W]], x: Src| -> [V; W] {
            if x & CONSTANT_BIT != 0 {
                constants
                    .get((x & !CONSTANT_BIT) as usize)
                    .copied()
                    .unwrap_or([zero; W])
            } else {
                regs.get(x as usize).copied().unwrap_or([zero; W])
            }
        };
        let mut regs: Vec<[V; W]> = vec![[zero; W]; self.registers];
        let mut valid = [true; W];
        for step in self.steps.iter() {
            match step.unpack() {
                Step::Load { input, out } => {
                    if let Some(row) = regs.get_mut(out as usize) {
                        fill(input, &mut row[..width.min(W)]);
                    }
                }
                Step::Op { op, a, b, out } => {
                    let (x, y) = (get(&regs, a), get(&regs, b));
                    let value = apply_fixed(op, x, y);
                    if let Some(row) = regs.get_mut(out as usize) {
                        *row = value;
                    }
                }
                guard @ Step::Order { a, b, .. } => {
                    let (a, b) = (get(&regs, a), get(&regs, b));
                    check(guard, |l| a[l].value(), |l| b[l].value(), &mut valid);
                }
                guard @ Step::Finite { a, .. } => {
                    let a = get(&regs, a);
                    check(guard, |l| a[l].value(), |l| a[l].value(), &mut valid);
                }
            }
        }
        let out = get(&regs, self.output);
        (0..width.min(W))
            .map(|l| valid[l].then(|| out[l]))
            .collect()
    }

    /// Points per run for `count` points on `threads` threads: the points
    /// shared evenly, but no more than keep the registers in
    /// [`register_budget`], and no fewer than [`LANES`]: reading a step
    /// costs about as much as computing it for a few points, so a few
    /// points are one run, not one per thread.
    pub fn width_for(&self, count: usize, threads: usize) -> usize {
        let cache = register_budget() / (self.registers.max(1) * std::mem::size_of::<B>());
        count
            .div_ceil(threads.max(1))
            .max(LANES)
            .min(cache.max(LANES))
            .min(count)
            .max(1)
    }

    /// The cones of the given input elements (tensor, row-major offset):
    /// the steps each one reaches, with every step's value at the drawn
    /// point `input_of(tensor, offset)`. Moving one element then costs its
    /// cone, not the whole program: with sums taken pairwise, a layer's
    /// element reaches the outputs that read it and log n partial sums.
    pub fn cones(
        &self,
        elements: &[(usize, usize)],
        input_of: impl Fn(usize, usize) -> f64,
    ) -> Cones<B> {
        // Most calls ask for at most 64 elements: their masks are one word,
        // which the scan then handles as a plain integer.
        if elements.len() <= 64 {
            self.scan_cones::<1>(elements, input_of)
        } else {
            self.scan_cones::<0>(elements, input_of)
        }
    }

    /// The scan behind [`Replay::cones`], with masks of `WORDS` words, or
    /// of as many as the elements need where `WORDS` is 0.
    fn scan_cones<const WORDS: usize>(
        &self,
        elements: &[(usize, usize)],
        input_of: impl Fn(usize, usize) -> f64,
    ) -> Cones<B> {
        let zero = B::of(0.0);
        let mut cones: Vec<Cone<B>> = elements.iter().map(|_| Cone::default()).collect();
        let mut value = vec![zero; self.registers];
        let mut producer = vec![NONE; self.registers];
        // Which elements (up to 64 per word) reach each register's value.
        let words = match WORDS {
            0 => elements.len().div_ceil(64).max(1),
            fixed => fixed,
        };
        debug_assert!(elements.len() <= words * 64);
        let mut reach = vec![0u64; self.registers * words];
        // An element named twice shares the cone of its first mention.
        let mut index: std::collections::HashMap<(usize, usize), usize> = Default::default();
        let alias: Vec<usize> = elements
            .iter()
            .enumerate()
            .map(|(e, &x)| *index.entry(x).or_insert(e))
            .collect();
        // The element each input is, if any: one look-up per input, here,
        // rather than one per load in the scan; by binary search in the few
        // elements asked for, which costs less than hashing every input.
        let mut firsts: Vec<((usize, usize), usize)> = index.into_iter().collect();
        firsts.sort_unstable();
        let element_of: Vec<u32> = self
            .inputs
            .iter()
            .map(|x| {
                firsts
                    .binary_search_by_key(&(x.0 as usize, x.1 as usize), |&(x, _)| x)
                    .map_or(NONE, |i| firsts[i].1 as u32)
            })
            .collect();
        let constant = |x: Src| {
            self.constants
                .get((x & !CONSTANT_BIT) as usize)
                .copied()
                .unwrap_or(zero)
        };
        let read = |value: &[B], x: Src| {
            if x & CONSTANT_BIT != 0 {
                constant(x)
            } else {
                value[x as usize]
            }
        };
        let from = |producer: &[u32], x: Src| {
            if x & CONSTANT_BIT != 0 {
                x
            } else {
                producer[x as usize]
            }
        };
        let mut mask = vec![0u64; words];
        let limit = self.steps.len() / CONE_FRACTION;
        let input_value = |&(k, p): &(u32, u32)| B::of(input_of(k as usize, p as usize));
        for (i, step) in self.steps.iter().enumerate() {
            let step = step.unpack();
            mask.iter_mut().for_each(|m| *m = 0);
            let (a, b) = match step {
                Step::Load { input, out } => {
                    let v = input_value(&self.inputs[input as usize]);
                    value[out as usize] = v;
                    producer[out as usize] = i as u32;
                    let e = element_of[input as usize];
                    if e != NONE {
                        let e = e as usize;
                        mask[e / 64] |= 1 << (e % 64);
                        cones[e].input = Some(input);
                        let none = Operand::Value(zero);
                        cones[e].push(
                            ConeStep {
                                step: i as u32,
                                a: none,
                                b: none,
                            },
                            limit,
                        );
                    }
                    reach[out as usize * words..(out as usize + 1) * words].copy_from_slice(&mask);
                    continue;
                }
                Step::Op { a, b, .. } | Step::Order { a, b, .. } => (a, b),
                Step::Finite { a, .. } => (a, a),
            };
            for x in [a, b] {
                if x & CONSTANT_BIT == 0 {
                    for (m, r) in mask
                        .iter_mut()
                        .zip(&reach[x as usize * words..(x as usize + 1) * words])
                    {
                        *m |= r;
                    }
                }
            }
            // An operand the element reaches comes from its cone; one it
            // does not keeps its value at the drawn point.
            let operand = |x: Src, e: usize| -> Operand<B> {
                if x & CONSTANT_BIT == 0
                    && reach[x as usize * words + e / 64] & (1 << (e % 64)) != 0
                {
                    Operand::Cone(producer[x as usize])
                } else {
                    Operand::Value(read(&value, x))
                }
            };
            for (w, &m) in mask.iter().enumerate() {
                let mut bits = m;
                while bits != 0 {
                    let e = w * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let step = ConeStep {
                        step: i as u32,
                        a: operand(a, e),
                        b: operand(b, e),
                    };
                    cones[e].push(step, limit);
                }
            }
            if let Step::Op { op, out, .. } = step {
                let v = apply_op(op, read(&value, a), read(&value, b));
                value[out as usize] = v;
                producer[out as usize] = i as u32;
                reach[out as usize * words..(out as usize + 1) * words].copy_from_slice(&mask);
            }
        }
        let output = from(&producer, self.output);
        let output_value = read(&value, self.output);
        if self.output & CONSTANT_BIT == 0 {
            let at = self.output as usize * words;
            for (e, cone) in cones.iter_mut().enumerate() {
                if reach[at + e / 64] & (1 << (e % 64)) != 0 {
                    cone.output = Some(output);
                }
            }
        }
        // A whole cone is replayed whole, reading every input; the values
        // of a layer's inputs are not held for cones that never do.
        let inputs = if cones.iter().any(|c| c.whole) {
            self.inputs.iter().map(input_value).collect()
        } else {
            vec![]
        };
        Cones {
            inputs,
            output: output_value,
            cones,
            alias,
        }
    }

    /// L with element `e` of `cones` (and nothing else) moved to each of
    /// up to [`LANES`] values: its cone replayed, the rest as at the drawn
    /// point. `None` where a lane takes a decision the recording did not.
    pub fn run_cone(&self, cones: &Cones<B>, e: usize, moved: &[f64]) -> Vec<Option<B>> {
        let zero = B::of(0.0);
        let lanes = moved.len().min(LANES);
        let Some(cone) = cones.alias.get(e).and_then(|&e| cones.cones.get(e)) else {
            return vec![None; lanes];
        };
        if cone.whole {
            return self.run_lanes_by_input(
                lanes,
                |c| c,
                |input, row| {
                    if Some(input) == cone.input {
                        for (slot, &v) in row.iter_mut().zip(moved) {
                            *slot = B::of(v);
                        }
                    } else {
                        row.fill(cones.inputs.get(input as usize).copied().unwrap_or(zero));
                    }
                },
            );
        }
        let mut valid = [false; LANES];
        valid[..lanes].fill(true);
        let mut vals: Vec<[B; LANES]> = Vec::with_capacity(cone.steps.len());
        let position = |step: u32| cone.steps.binary_search_by_key(&step, |s| s.step).ok();
        let fetch = |vals: &[[B; LANES]], x: Operand<B>| -> [B; LANES] {
            match x {
                Operand::Value(v) => [v; LANES],
                Operand::Cone(p) => position(p)
                    .and_then(|j| vals.get(j).copied())
                    .unwrap_or([zero; LANES]),
            }
        };
        for &ConeStep {
            step: i,
            a: pa,
            b: pb,
        } in &cone.steps
        {
            let value = match self.steps[i as usize].unpack() {
                Step::Load { .. } => {
                    std::array::from_fn(|l| B::of(moved.get(l).copied().unwrap_or(f64::NAN)))
                }
                Step::Op { op, .. } => {
                    let (a, b) = (fetch(&vals, pa), fetch(&vals, pb));
                    let mut out = [zero; LANES];
                    apply_rows(op, &mut out, Arg::Row(&a), Arg::Row(&b));
                    out
                }
                guard @ (Step::Order { .. } | Step::Finite { .. }) => {
                    let (a, b) = (fetch(&vals, pa), fetch(&vals, pb));
                    check(
                        guard,
                        |l| a[l].value(),
                        |l| b[l].value(),
                        &mut valid[..lanes],
                    );
                    [zero; LANES]
                }
            };
            vals.push(value);
        }
        let out = match cone.output {
            Some(p) => fetch(&vals, Operand::Cone(p)),
            None => [cones.output; LANES],
        };
        (0..lanes).map(|l| valid[l].then_some(out[l])).collect()
    }

    /// Steps a run takes: the cost of a replay.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// Marks the lanes where a guard's test comes out otherwise than it did
/// when recorded (`a(l)`, `b(l)`: its operands' values on lane `l`).
#[inline(always)]
fn check(guard: Step, a: impl Fn(usize) -> f64, b: impl Fn(usize) -> f64, valid: &mut [bool]) {
    for (l, ok) in valid.iter_mut().enumerate() {
        let same = match guard {
            Step::Order { expected, .. } => a(l).partial_cmp(&b(l)) == expected,
            Step::Finite { expected, .. } => a(l).is_finite() == expected,
            _ => true,
        };
        *ok &= same;
    }
}

/// [`check`] on rows. A decision nearly always comes out on every lane as
/// recorded, so it is first taken on all of them in one pass the compiler
/// vectorizes (the test named by the expected outcome, with no branch per
/// lane); the lanes are marked one by one only where some lane differs.
#[inline(always)]
fn check_rows<B: Real>(guard: Step, a: &Read<'_, B>, b: &Read<'_, B>, valid: &mut [bool]) {
    let alike = match guard {
        Step::Order { expected, .. } => match expected {
            Some(Ordering::Less) => all_lanes(a, b, |x, y| x < y),
            Some(Ordering::Greater) => all_lanes(a, b, |x, y| x > y),
            Some(Ordering::Equal) => all_lanes(a, b, |x, y| x == y),
            None => all_lanes(a, b, |x, y| x.is_nan() | y.is_nan()),
        },
        Step::Finite { expected, .. } => all_lanes(a, a, |x, _| x.is_finite() == expected),
        Step::Load { .. } | Step::Op { .. } => true,
    };
    if !alike {
        check(guard, |l| a.at(l).value(), |l| b.at(l).value(), valid);
    }
}

/// Whether `test` holds on every lane of two rows (or constants).
#[inline(always)]
fn all_lanes<B: Real>(a: &Read<'_, B>, b: &Read<'_, B>, test: impl Fn(f64, f64) -> bool) -> bool {
    match (a, b) {
        (Read::Row(a), Read::Row(b)) => a
            .iter()
            .zip(*b)
            .fold(true, |all, (x, y)| all & test(x.value(), y.value())),
        (Read::Row(a), Read::Scalar(y)) => {
            let y = y.value();
            a.iter().fold(true, |all, x| all & test(x.value(), y))
        }
        (Read::Scalar(x), Read::Row(b)) => {
            let x = x.value();
            b.iter().fold(true, |all, y| all & test(x, y.value()))
        }
        (Read::Scalar(x), Read::Scalar(y)) => test(x.value(), y.value()),
    }
}

/// A number the evaluator computes with ([`Scalar`]), as a replay's lane:
/// every operation is the one [`Scalar`] gives it, so a replay over lanes
/// of, say, hyper-dual numbers computes what the evaluator would.
#[derive(Clone, Copy, Debug)]
pub struct Lane<S>(pub S);

impl<S: Scalar + std::fmt::Debug> Real for Lane<S> {
    fn of(v: f64) -> Self {
        Lane(S::constant(v))
    }
    fn value(self) -> f64 {
        self.0.real()
    }
    fn exp(self) -> Self {
        Lane(self.0.exp())
    }
    fn ln(self) -> Self {
        Lane(self.0.ln())
    }
    fn ln_1p(self) -> Self {
        Lane(self.0.ln_1p())
    }
    fn sqrt(self) -> Self {
        Lane(self.0.sqrt())
    }
    fn tanh(self) -> Self {
        Lane(self.0.tanh())
    }
    fn sin_cos(self) -> (Self, Self) {
        (Lane(self.0.sin()), Lane(self.0.cos()))
    }
    fn powi(self, k: i32) -> Self {
        Lane(self.0.powi(k))
    }
    fn abs(self) -> Self {
        Lane(self.0.abs())
    }
    fn recip(self) -> Self {
        Lane(self.0.recip())
    }
    fn smooth(self, f: Smooth) -> Self {
        Lane(self.0.smooth(f))
    }
}

macro_rules! lane_op {
    ($trait:ident, $method:ident) => {
        impl<S: Scalar> std::ops::$trait for Lane<S> {
            type Output = Self;
            #[inline]
            fn $method(self, b: Self) -> Self {
                Lane(std::ops::$trait::$method(self.0, b.0))
            }
        }
    };
}
lane_op!(Add, add);
lane_op!(Sub, sub);
lane_op!(Mul, mul);
lane_op!(Div, div);

impl<S: Scalar> std::ops::Neg for Lane<S> {
    type Output = Self;
    #[inline]
    fn neg(self) -> Self {
        Lane(-self.0)
    }
}

/// The row an operation writes and its operands' rows: split out of the
/// register block, so that the result may reuse an operand's register
/// ([`Arg::Out`]).
fn operands<V: Copy>(
    regs: &mut [V],
    width: usize,
    out: u32,
    a: Src,
    b: Src,
    constant: impl Fn(Src) -> V,
) -> (&mut [V], Arg<'_, V>, Arg<'_, V>) {
    let o = out as usize;
    let (below, rest) = regs.split_at_mut((o * width).min(regs.len()));
    let (row, above) = rest.split_at_mut(width.min(rest.len()));
    let (below, above): (&[V], &[V]) = (below, above);
    let arg = |x: Src| {
        if x & CONSTANT_BIT != 0 {
            return Arg::Scalar(constant(x));
        }
        let x = x as usize;
        let found = match x.cmp(&o) {
            Ordering::Equal => return Arg::Out,
            Ordering::Less => below.get(x * width..(x + 1) * width),
            Ordering::Greater => above.get((x - o - 1) * width..(x - o) * width),
        };
        found.map_or(Arg::Scalar(constant(u32::MAX)), Arg::Row)
    };
    (row, arg(a), arg(b))
}

/// A register's row, or a constant, for reading.
fn read<V: Copy>(regs: &[V], width: usize, x: Src, constant: impl Fn(Src) -> V) -> Read<'_, V> {
    if x & CONSTANT_BIT != 0 {
        Read::Scalar(constant(x))
    } else {
        let at = x as usize * width;
        regs.get(at..at + width)
            .map_or(Read::Scalar(constant(u32::MAX)), Read::Row)
    }
}

/// An operand of a step over rows: another register's row, the row being
/// written (its register is reused for the result), or one value for all.
#[derive(Clone, Copy)]
enum Arg<'r, B> {
    Row(&'r [B]),
    Out,
    Scalar(B),
}

/// A register's row or a constant, for reading (guards, the output).
enum Read<'r, B> {
    Row(&'r [B]),
    Scalar(B),
}

impl<B: Copy> Read<'_, B> {
    fn at(&self, l: usize) -> B {
        match self {
            Read::Row(r) => r[l],
            Read::Scalar(v) => *v,
        }
    }
}

/// One operation over a row; the match on the operation is outside the
/// loops, so each loop is straight arithmetic the compiler vectorizes.
#[inline]
fn apply_rows<B: Real>(op: Op, out: &mut [B], a: Arg<'_, B>, b: Arg<'_, B>) {
    match op {
        Op::Add => zip_rows(out, a, b, |x, y| x + y),
        Op::Sub => zip_rows(out, a, b, |x, y| x - y),
        Op::Mul => zip_rows(out, a, b, |x, y| x * y),
        Op::Div => zip_rows(out, a, b, |x, y| x / y),
        Op::Neg => zip_rows(out, a, b, |x, _| -x),
        // The common exponents as constants: the power is then a product
        // the loop vectorizes, not a loop of its own per element (the
        // same function at the same exponent, so the same value).
        Op::Powi(2) => zip_rows(out, a, b, |x, _| x.powi(2)),
        Op::Powi(3) => zip_rows(out, a, b, |x, _| x.powi(3)),
        Op::Powi(k) => zip_rows(out, a, b, |x, _| x.powi(k)),
        _ => zip_rows(out, a, b, |x, y| apply_op(op, x, y)),
    }
}

/// One operation on `W` lanes, as [`apply_rows`] does it on a row.
#[inline]
fn apply_fixed<const W: usize, B: Real>(op: Op, a: [B; W], b: [B; W]) -> [B; W] {
    let lanes = |f: &dyn Fn(B, B) -> B| std::array::from_fn(|l| f(a[l], b[l]));
    match op {
        Op::Add => std::array::from_fn(|l| a[l] + b[l]),
        Op::Sub => std::array::from_fn(|l| a[l] - b[l]),
        Op::Mul => std::array::from_fn(|l| a[l] * b[l]),
        Op::Div => std::array::from_fn(|l| a[l] / b[l]),
        Op::Neg => std::array::from_fn(|l| -a[l]),
        Op::Powi(2) => std::array::from_fn(|l| a[l].powi(2)),
        Op::Powi(3) => std::array::from_fn(|l| a[l].powi(3)),
        Op::Powi(k) => std::array::from_fn(|l| a[l].powi(k)),
        _ => lanes(&|x, y| apply_op(op, x, y)),
    }
}

#[inline(always)]
fn zip_rows<B: Copy>(out: &mut [B], a: Arg<'_, B>, b: Arg<'_, B>, f: impl Fn(B, B) -> B) {
    match (a, b) {
        (Arg::Row(a), Arg::Row(b)) => {
            for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                *o = f(x, y);
            }
        }
        (Arg::Row(a), Arg::Scalar(y)) => {
            for (o, &x) in out.iter_mut().zip(a) {
                *o = f(x, y);
            }
        }
        (Arg::Scalar(x), Arg::Row(b)) => {
            for (o, &y) in out.iter_mut().zip(b) {
                *o = f(x, y);
            }
        }
        (Arg::Scalar(x), Arg::Scalar(y)) => out.fill(f(x, y)),
        (Arg::Out, Arg::Row(b)) => {
            for (o, &y) in out.iter_mut().zip(b) {
                *o = f(*o, y);
            }
        }
        (Arg::Row(a), Arg::Out) => {
            for (o, &x) in out.iter_mut().zip(a) {
                *o = f(x, *o);
            }
        }
        (Arg::Out, Arg::Scalar(y)) => {
            for o in out.iter_mut() {
                *o = f(*o, y);
            }
        }
        (Arg::Scalar(x), Arg::Out) => {
            for o in out.iter_mut() {
                *o = f(x, *o);
            }
        }
        (Arg::Out, Arg::Out) => {
            for o in out.iter_mut() {
                *o = f(*o, *o);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::analysis::{analyze, size_sweep};
    use crate::eval::{Instance, draw_values, record};
    use crate::source::Source;

    /// The register budget from sysfs's words: a size, the CPUs that share
    /// it, half of a core's share, and 256 KiB at the least or unknown.
    #[test]
    fn the_register_budget_is_half_a_cores_share_of_its_cache() {
        assert_eq!(cache_size("1024K\n"), Some(1 << 20));
        assert_eq!(cache_size("2M"), Some(2 << 20));
        assert_eq!(cache_size("524288"), Some(1 << 19));
        assert_eq!(cache_size("lots"), None);
        assert_eq!(cache_size(""), None);
        assert_eq!(cpu_count("0\n"), Some(1));
        assert_eq!(cpu_count("0-3"), Some(4));
        assert_eq!(cpu_count("0,4"), Some(2));
        assert_eq!(cpu_count("0-1,8-9"), Some(4));
        assert_eq!(cpu_count("3-1"), None);
        assert_eq!(cpu_count(""), None);
        assert_eq!(budget_of(Some(1 << 20)), 512 << 10);
        assert_eq!(budget_of(Some(4 << 20)), 2 << 20);
        assert_eq!(budget_of(Some(256 << 10)), 256 << 10);
        assert_eq!(budget_of(None), 256 << 10);
    }

    fn instance_of<'a>(program: &'a crate::analysis::Program, source: &'a Source) -> Instance<'a> {
        let sizes = size_sweep(program, &[]).unwrap().pop().unwrap();
        Instance::new(program, source, sizes, 1 << 20).unwrap()
    }

    /// At the recorded values and at points nearby, a replay gives the
    /// evaluator's L bit for bit; at a point that takes another branch it
    /// says so instead of giving a wrong L.
    #[test]
    fn replays_agree_with_the_evaluator_or_decline() {
        let text = "
            dim n = 6
            input x[n] in (-2, 2)
            param w[n] in (0.5, 2)
            let z = sum(k) exp(x[k])
            y[i] = relu(x[i]) * log(w[i]) + tanh(w[i] * x[i]) / z + max(x[i], 0.3) + [x[i] > 0] * x[i]^3
        ";
        let source = Source::new("t.dl", text);
        let program = analyze(&crate::syntax::parse(&source).unwrap()).unwrap();
        let instance = instance_of(&program, &source);
        let values = draw_values(&instance, 3).unwrap();
        let replay = Replay::compile(record::<f64>(&instance, &values).unwrap()).unwrap();
        let x = program.tensors.iter().position(|t| t.name == "x").unwrap();
        let mut points = vec![values.clone()];
        for (k, scale) in [(0usize, 1e-9), (1, 1e-3), (2, 0.5), (3, 3.0), (4, -2.0)] {
            let mut p = values.clone();
            for (i, v) in p[x].iter_mut().enumerate() {
                *v += scale * ((i + k) as f64).sin();
            }
            points.push(p);
        }
        let refs: Vec<&[ArrayD<f64>]> = points.iter().map(Vec::as_slice).collect();
        let losses = replay.losses(&refs);
        let mut declined = 0;
        for (p, l) in points.iter().zip(&losses) {
            let exact = instance.evaluation(p).loss().unwrap();
            match l {
                Some(l) => assert_eq!(l.to_bits(), exact.to_bits()),
                None => declined += 1,
            }
        }
        assert!(losses[0].is_some() && losses[1].is_some(), "{losses:?}");
        assert!(declined > 0, "the large steps change branches: {losses:?}");
    }

    /// f64's program in f32 ([`Replay::in_precision`]) is what recording
    /// and compiling in f32 gives, step for step and constant for constant,
    /// wherever the f32 values decide alike at the drawn point; and its L
    /// is the f32 evaluator's bit for bit. Over every bundled and test spec
    /// with a layer or loss, at the largest size of its sweep.
    #[test]
    fn a_program_in_f32_is_the_f32_recording_compiled() {
        let (mut shared, mut computed) = (0, 0);
        crate::test_support::for_each_spec_with_a_loss(|path, _, instance| {
            let Ok(values) = draw_values(instance, 0) else {
                return;
            };
            let Some(r64) = record::<f64>(instance, &values)
                .ok()
                .and_then(Replay::compile)
            else {
                return;
            };
            let Some(mine) = r64.in_precision::<f32>() else {
                assert!(r64.computed_constants, "{path:?}");
                computed += 1;
                return;
            };
            let single: Vec<ArrayD<f32>> = values.iter().map(|a| a.mapv(f32::constant)).collect();
            let drawn = |_: usize, k: usize, p: usize| {
                f64::from(single[k].as_slice_memory_order().unwrap()[p])
            };
            if mine.run_with(1, drawn)[0].is_none() {
                return;
            }
            let theirs = Replay::compile(record::<f32>(instance, &single).unwrap()).unwrap();
            assert_eq!(mine.steps, theirs.steps, "{path:?}");
            assert_eq!(mine.inputs, theirs.inputs, "{path:?}");
            assert_eq!(
                (mine.registers, mine.output),
                (theirs.registers, theirs.output),
                "{path:?}"
            );
            let bits = |c: &[f32]| c.iter().map(|c| c.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&mine.constants), bits(&theirs.constants), "{path:?}");
            // And L near the drawn point, as the f32 evaluator gives it.
            let moved: Vec<ArrayD<f32>> = single
                .iter()
                .map(|a| a.mapv(|v| v * (1.0 + f32::EPSILON * 4.0)))
                .collect();
            let at = |_: usize, k: usize, p: usize| {
                f64::from(moved[k].as_slice_memory_order().unwrap()[p])
            };
            if let (Some(l), Ok(exact)) =
                (mine.run_with(1, at)[0], instance.evaluation(&moved).loss())
            {
                assert_eq!(l.to_bits(), exact.to_bits(), "{path:?}");
            }
            shared += 1;
        });
        assert!(
            shared > 100 && computed > 0,
            "{shared} shared, {computed} with computed constants"
        );
    }

    /// Runs of a few points (fixed lanes) and of many (rows) give each
    /// point the same L bit for bit, and decline the same points.
    #[test]
    fn every_width_gives_the_same_values() {
        let text = "
            dim n = 7
            input x[n] in (-2, 2)
            param w[n] in (0.5, 2)
            y[i] = relu(x[i]) * log(w[i]) + tanh(w[i] * x[i]) / sum(k) exp(x[k]) + x[i]^3
        ";
        let source = Source::new("t.dl", text);
        let program = analyze(&crate::syntax::parse(&source).unwrap()).unwrap();
        let instance = instance_of(&program, &source);
        let values = draw_values(&instance, 5).unwrap();
        let flat: Vec<&[f64]> = values
            .iter()
            .map(|a| a.as_slice_memory_order().unwrap())
            .collect();
        let replay = Replay::compile(record::<f64>(&instance, &values).unwrap()).unwrap();
        // Point l moves every element by l/8: the far ones change branches.
        let at =
            |l: usize, k: usize, p: usize| flat[k][p] + l as f64 / 8.0 * ((p + k) as f64).cos();
        let wide = replay.run_with(40, at);
        assert!(wide.iter().any(Option::is_some) && wide.iter().any(Option::is_none));
        for width in 1..=12 {
            let few = replay.run_with(width, at);
            let bits =
                |v: &[Option<f64>]| v.iter().map(|l| l.map(f64::to_bits)).collect::<Vec<_>>();
            assert_eq!(bits(&few), bits(&wide[..width]), "width {width}");
        }
    }

    /// A register is freed at its value's last read and reused: the A3
    /// layer, whose outputs are summed into L as they are made, needs a
    /// handful of registers at N = 64 and, with the cascade's log₂ N
    /// partial sums, a few more at N = 4096, not one per element.
    #[test]
    fn registers_are_reused_after_their_last_read() {
        let text = "
            dim N = 8
            input x[N]
            param a, b
            y[i] = a * (x[i] + x[i+2]) + b     for i in 1..=N-2
        ";
        let source = Source::new("t.dl", text);
        let program = analyze(&crate::syntax::parse(&source).unwrap()).unwrap();
        let registers = |n: i64| {
            let sizes = size_sweep(&program, &[("N".to_string(), n)])
                .unwrap()
                .pop()
                .unwrap();
            let instance = Instance::new(&program, &source, sizes, 1 << 20).unwrap();
            let values = draw_values(&instance, 5).unwrap();
            Replay::compile(record::<f64>(&instance, &values).unwrap())
                .unwrap()
                .registers
        };
        let (small, large) = (registers(64), registers(4096));
        assert!(small <= 16, "{small} registers at N = 64");
        assert!(
            large <= small + 8,
            "{large} registers at N = 4096, {small} at 64"
        );
    }

    /// Leaves found from where each tensor's run starts are the table's,
    /// empty tensors and entries past the leaves included; leaves laid out
    /// otherwise get the table.
    #[test]
    fn leaves_by_runs_are_the_tables() {
        let tensor = |entries: Vec<u32>| {
            ndarray::ArrayD::from_shape_vec(vec![entries.len()], entries).unwrap()
        };
        let inputs = vec![
            tensor(vec![0, 1, 2]),
            tensor(vec![]),
            tensor(vec![3]),
            tensor(vec![4, 5]),
        ];
        let leaves = |inputs: &Vec<ndarray::ArrayD<u32>>| {
            Leaves::of(LeafEntries::of(inputs.clone(), |_| true))
        };
        let runs = leaves(&inputs);
        assert!(matches!(runs, Leaves::Runs(_)));
        let table = Leaves::table(&inputs);
        assert_eq!(runs.count(), 6);
        for n in 0..10 {
            assert_eq!(runs.element(n), table.element(n), "entry {n}");
        }
        assert_eq!(runs.element(3), Some((2, 0)));
        assert_eq!(runs.element(6), None);
        let shuffled = vec![tensor(vec![1, 0]), tensor(vec![2])];
        assert!(matches!(leaves(&shuffled), Leaves::Table(_)));
        assert_eq!(leaves(&shuffled).element(0), Some((0, 1)));
    }

    /// A run streams every step: each is 12 bytes, and packs and unpacks
    /// to itself, the largest register included.
    #[test]
    fn steps_are_twelve_bytes_and_pack_losslessly() {
        assert_eq!(std::mem::size_of::<Packed>(), 12);
        let steps = [
            Step::Load { input: 7, out: 3 },
            Step::Load {
                input: u32::MAX,
                out: (MAX_REGISTERS - 1) as u32,
            },
            Step::Op {
                op: Op::Smooth(Smooth::Trigamma),
                a: CONSTANT_BIT | 1,
                b: 2,
                out: (MAX_REGISTERS - 1) as u32,
            },
            Step::Op {
                op: Op::Powi(-3),
                a: 5,
                b: 5,
                out: 1,
            },
            Step::Op {
                op: Op::Div,
                a: 2,
                b: CONSTANT_BIT | 9,
                out: 4,
            },
            Step::Order {
                a: 1,
                b: 2,
                expected: None,
            },
            Step::Order {
                a: 1,
                b: 2,
                expected: Some(Ordering::Greater),
            },
            Step::Finite {
                a: 6,
                expected: true,
            },
        ];
        for step in steps {
            assert_eq!(
                format!("{:?}", Packed::pack(step).unpack()),
                format!("{step:?}")
            );
        }
    }

    /// An element named twice among the cones moves as it does alone.
    #[test]
    fn an_element_named_twice_shares_its_cone() {
        let text = "
            dim n = 5
            input x[n] in (-2, 2)
            y[i] = x[i] * x[i] + sum(k) x[k]
        ";
        with_replay_of(text, 1, |replay, flat, x| {
            let cones = replay.cones(&[(x, 2), (x, 3), (x, 2)], |k, p| flat[k][p]);
            let moved = [flat[x][2] + 0.25];
            let whole = replay.run_with(1, |_, k, p| {
                if (k, p) == (x, 2) {
                    moved[0]
                } else {
                    flat[k][p]
                }
            });
            for e in [0, 2] {
                assert_eq!(replay.run_cone(&cones, e, &moved), whole);
            }
            assert_ne!(replay.run_cone(&cones, 1, &moved), whole);
        });
    }

    /// Cones none of which is whole hold no value of the layer's inputs
    /// (a whole cone's replays read them all): moving an element by its
    /// cone gives what a whole run gives, either way.
    #[test]
    fn only_whole_cones_hold_the_inputs() {
        let local = "
            dim n = 400
            input x[n] in (-2, 2)
            param a, b
            y[i] = a * (x[i] + x[i+2]) + b    for i in 1..=n-2
        ";
        let global = "
            dim n = 150
            input x[n] in (-2, 2)
            let z = tanh(sum(k) x[k])
            y[i] = x[i] * z
        ";
        for (text, whole_cones) in [(local, false), (global, true)] {
            with_replay_of(text, 2, |replay, flat, x| {
                let elements = [(x, 0), (x, 17), (x, 149)];
                let cones = replay.cones(&elements, |k, p| flat[k][p]);
                assert_eq!(cones.cones.iter().any(|c| c.whole), whole_cones);
                assert_eq!(cones.inputs.is_empty(), !whole_cones);
                for (e, &(_, p)) in elements.iter().enumerate() {
                    let moved = [flat[x][p] + 0.125];
                    let whole = replay.run_with(1, |_, k, q| {
                        if (k, q) == (x, p) {
                            moved[0]
                        } else {
                            flat[k][q]
                        }
                    });
                    assert_eq!(replay.run_cone(&cones, e, &moved), whole, "{text}");
                }
            });
        }
    }

    /// The replay of `text`'s L at the values drawn with `seed`, handed to
    /// `check` with every tensor's values row-major and the index of `x`.
    fn with_replay_of(text: &str, seed: u64, check: impl FnOnce(&Replay<f64>, &[&[f64]], usize)) {
        let source = Source::new("t.dl", text);
        let program = analyze(&crate::syntax::parse(&source).unwrap()).unwrap();
        let instance = instance_of(&program, &source);
        let values = draw_values(&instance, seed).unwrap();
        let replay = Replay::compile(record::<f64>(&instance, &values).unwrap()).unwrap();
        let x = program.tensors.iter().position(|t| t.name == "x").unwrap();
        let flat: Vec<&[f64]> = values
            .iter()
            .map(|a| a.as_slice_memory_order().unwrap())
            .collect();
        check(&replay, &flat, x);
    }

    /// Cones asked for many elements at once (masks of several words) move
    /// each element as a whole run does, whichever word it falls in, as
    /// cones of one word do.
    #[test]
    fn cones_of_many_elements_move_each_as_a_whole_run() {
        let text = "
            dim n = 150
            input x[n] in (-2, 2)
            y[i] = x[i] * x[i] + tanh(sum(k) x[k]) * x[n - 1 - i]
        ";
        with_replay_of(text, 4, |replay, flat, x| {
            // 140 elements: three words of mask, the last one partly used.
            let elements: Vec<(usize, usize)> = (0..140).map(|p| (x, (p * 7) % 150)).collect();
            let many = replay.cones(&elements, |k, p| flat[k][p]);
            for (e, &(_, p)) in elements.iter().enumerate() {
                let moved = [flat[x][p] + 0.125, flat[x][p] - 0.5];
                let whole = replay.run_with(2, |l, k, q| {
                    if (k, q) == (x, p) {
                        moved[l]
                    } else {
                        flat[k][q]
                    }
                });
                assert_eq!(replay.run_cone(&many, e, &moved), whole, "element {e}");
                let one = replay.cones(&[(x, p)], |k, q| flat[k][q]);
                assert_eq!(replay.run_cone(&one, 0, &moved), whole, "element {e} alone");
            }
        });
    }

    /// A guard on rows marks the lanes the lane-by-lane test marks, for
    /// every kind of decision and outcome, operands being rows or
    /// constants, with NaN and infinities among the values.
    #[test]
    fn guards_on_rows_mark_the_lanes_the_lane_by_lane_test_marks() {
        let values = [
            -2.0,
            -0.0,
            0.0,
            1.5,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1.5,
        ];
        // Rows of every pair of values, and rows where every lane agrees.
        let a: Vec<f64> = (0..64).map(|l| values[l % 8]).collect();
        let b: Vec<f64> = (0..64).map(|l| values[l / 8]).collect();
        let ones = vec![1.0; 64];
        let twos = vec![2.0; 64];
        let guards = [
            Some(Ordering::Less),
            Some(Ordering::Equal),
            Some(Ordering::Greater),
            None,
        ]
        .into_iter()
        .map(|expected| Step::Order {
            a: 0,
            b: 1,
            expected,
        })
        .chain([true, false].map(|expected| Step::Finite { a: 0, expected }));
        let mut marked_somewhere = 0;
        for guard in guards {
            let operands = [
                (Read::Row(&a[..]), Read::Row(&b[..])),
                (Read::Row(&a[..]), Read::Scalar(1.5)),
                (Read::Scalar(f64::NAN), Read::Row(&b[..])),
                (Read::Row(&ones[..]), Read::Row(&twos[..])),
                (Read::Scalar(0.0), Read::Scalar(-0.0)),
            ];
            for (x, y) in &operands {
                // Lane 3 is already marked: a guard never unmarks a lane.
                let start: Vec<bool> = (0..64).map(|l| l != 3).collect();
                let mut by_lane = start.clone();
                check(guard, |l| x.at(l), |l| y.at(l), &mut by_lane);
                let mut on_rows = start.clone();
                check_rows(guard, x, y, &mut on_rows);
                assert_eq!(on_rows, by_lane, "{guard:?}");
                marked_somewhere += usize::from(by_lane.iter().filter(|ok| !**ok).count() > 1);
            }
        }
        assert!(marked_somewhere > 10, "{marked_somewhere}");
    }

    /// Sigmoid's two forms meet away from 0 (see `SIGMOID_SWITCH`): points
    /// that move its arguments across 0 replay, as the evaluator computes
    /// them, rather than being declined to it one by one.
    #[test]
    fn sigmoid_replays_across_zero() {
        let text = "
            dim n = 8
            input x[n] in (-1, 1)
            y[i] = sigmoid(x[i]) * x[i]
        ";
        let source = Source::new("t.dl", text);
        let program = analyze(&crate::syntax::parse(&source).unwrap()).unwrap();
        let instance = instance_of(&program, &source);
        let values = draw_values(&instance, 3).unwrap();
        let replay = Replay::compile(record::<f64>(&instance, &values).unwrap()).unwrap();
        let points: Vec<Vec<ArrayD<f64>>> = [-2.0, 2.0, -20.0, 20.0]
            .iter()
            .map(|&shift| values.iter().map(|v| v.mapv(|x| x + shift)).collect())
            .collect();
        let refs: Vec<&[ArrayD<f64>]> = points.iter().map(Vec::as_slice).collect();
        for (p, l) in points.iter().zip(replay.losses(&refs)) {
            let exact = instance.evaluation(p).loss().unwrap();
            assert_eq!(l.map(f64::to_bits), Some(exact.to_bits()));
        }
    }

    /// A point where the evaluator fails (log of a negative) is declined.
    #[test]
    fn a_point_outside_the_domain_is_declined() {
        let text = "
            dim n = 3
            param w[n] in (0.5, 2)
            y[i] = log(w[i])
        ";
        let source = Source::new("t.dl", text);
        let program = analyze(&crate::syntax::parse(&source).unwrap()).unwrap();
        let instance = instance_of(&program, &source);
        let values = draw_values(&instance, 0).unwrap();
        let replay = Replay::compile(record::<f64>(&instance, &values).unwrap()).unwrap();
        let w = program.tensors.iter().position(|t| t.name == "w").unwrap();
        let mut bad = values.clone();
        bad[w][[1]] = -1.0;
        assert!(instance.evaluation(&bad).loss().is_err());
        let losses = replay.losses(&[&values, &bad]);
        assert!(losses[0].is_some());
        assert!(losses[1].is_none());
    }
}
