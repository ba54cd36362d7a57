//! The `dlverify` command: options, files, output and exit codes. The work
//! itself is the library's.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use dlverify::report::{self, Summary, human::HumanOptions};
use dlverify::syntax::ast::Precision;
use dlverify::verify::Options;
use dlverify::verify::outcome::FileOutcome;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Checks the mathematics of deep-learning exercises.
///
/// Each `.dl` spec declares a layer or a loss in index notation and claims
/// about it, such as hand-derived gradients. dlverify derives the true
/// gradient by dual-number autodiff, checks every claim at several sizes,
/// and reports each as pass or fail with the evidence.
#[derive(Parser, Debug)]
#[command(
    name = "dlverify",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "\
Examples:
  dlverify specs/                       check every spec in a directory
  dlverify specs/a3_recurrent_sequence.dl --dim N=1000
  dlverify specs/ --format json --seed 7
  dlverify specs/ --format short        one line per problem, for editors and CI
  dlverify my_layer.dl --show-grad      print the derived gradients
  cat my_layer.dl | dlverify -          read a spec from standard input
  dlverify check specs/                 parse and analyse only, no numeric checks
  dlverify explain dl::analysis::unknown_name

Exit codes: 0 every claim came out as expected, 1 a claim did not,
2 a file could not be checked or the command line is wrong."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Parse and analyse specs without checking any claim: names, index
    /// ranges, shapes. Fast enough for an editor's on-save hook.
    Check {
        /// Spec files, directories of `*.dl` files, or `-` for standard input.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,

        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Explain a diagnostic code: what it means, a wrong example and a
    /// right one. Without a code, list every code.
    Explain {
        /// A code as reports print it, e.g. `dl::analysis::unknown_name`.
        code: Option<String>,
    },
    /// Serve editors over the Language Server Protocol on standard input
    /// and output: diagnostics as you type, claims checked on save.
    Lsp,
    /// Derive the gradient of L in every input and param from the spec's
    /// forward definitions, as `grad` claims (and the adjoint `let`s they
    /// read) in the spec language. Every derived claim is checked by the
    /// engine before anything is printed; one that fails is a bug of
    /// derive, reported with exit code 1. Constructs not derived yet
    /// (functions with jumps, random tensors) are refused with a diagnostic
    /// and exit code 2.
    Derive {
        /// The spec file, or `-` for standard input.
        #[arg(value_name = "PATH")]
        path: PathBuf,

        /// Print nothing derived: only whether every derived claim holds.
        #[arg(long)]
        check: bool,

        /// Add the derived lines to the end of the spec file, below a
        /// comment line, for a teacher to edit; nothing is printed.
        #[arg(long, conflicts_with = "check")]
        append: bool,

        /// What to print once every derived claim holds: the lines in the
        /// spec language, or a solution sheet in the handout's notation.
        #[arg(long, value_enum, default_value_t = Emit::Spec, value_name = "FORMAT",
              conflicts_with_all = ["check", "append"])]
        emit: Emit,

        /// Seed of the random values the derived claims are checked at.
        #[arg(long, default_value_t = 0, value_name = "S")]
        seed: u64,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Spec files, directories whose `*.dl` files are checked, or `-` for
    /// standard input.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,

    /// Seed of every random draw: the same seed gives the same report.
    #[arg(long, default_value_t = 0, value_name = "S")]
    seed: u64,

    /// Set a size's default, the largest size checked, e.g. `--dim N=1000`; the
    /// small sizes where boundary mistakes show are checked too. Repeatable.
    #[arg(long = "dim", value_name = "NAME=VALUE", value_parser = parse_dim)]
    dims: Vec<(String, i64)>,

    /// Output format: `human` for reading, `json` for programs, `short` for
    /// one `file:line:col: error[code]: message` line per problem.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,

    /// Print the autodiff gradient of every input and param (at the largest size checked).
    #[arg(long)]
    show_grad: bool,

    /// Show evidence and cross-checks for every claim, not only failing ones.
    #[arg(long, short)]
    verbose: bool,

    /// Refuse sizes whose tensors hold more elements than this in all.
    #[arg(long, default_value_t = 10_000_000, value_name = "N")]
    max_elements: u64,

    /// Monte Carlo samples per point of a stochastic claim (`E[…]`, `Var[…]`
    /// that cannot be enumerated exactly).
    #[arg(long, default_value_t = dlverify::verify::DEFAULT_SAMPLES, value_name = "N", value_parser = clap::value_parser!(u64).range(2..))]
    samples: u64,

    /// Steps an update-rule claim may run; a claim asking for more is not checked.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    max_steps: i64,

    /// Seconds allowed to check one claim at one size; past it the claim is
    /// reported as not checked, and the run goes on.
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS", value_parser = parse_seconds)]
    timeout: f64,

    /// Compare autodiff with finite differences on at most this many elements per claim and size.
    #[arg(long, default_value_t = 64, value_name = "N")]
    fd_elements: usize,

    /// Write one SVG per Taylor claim into DIR: the remainder against ε on
    /// log-log axes, both schemes, reference slopes and the rounding floor.
    #[arg(long, value_name = "DIR")]
    plot: Option<PathBuf>,

    /// Run Taylor claims that name no precision in this one (`f32` shows
    /// what limited accuracy does to the one-sided check).
    #[arg(long, value_enum, value_name = "P")]
    taylor_precision: Option<PrecisionArg>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PrecisionArg {
    F32,
    F64,
}

/// What `dlverify derive` prints of lines that check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Emit {
    /// The derived lines in the spec language, to paste into the spec.
    Spec,
    /// A solution sheet in Markdown, ∂L/∂x per tensor in `$$` display math (GitHub, KaTeX).
    Markdown,
    /// The same sheet as a LaTeX document that compiles on its own (`article`, `amsmath`).
    Latex,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Human,
    Json,
    Short,
}

fn parse_dim(s: &str) -> Result<(String, i64), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, e.g. N=1000, got `{s}`"))?;
    let value: i64 = value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not a whole number"))?;
    if value < 1 {
        return Err(format!("a size is at least 1, got {value}"));
    }
    Ok((name.trim().to_string(), value))
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if v.is_finite() && v > 0.0 && v <= 1e9 {
        Ok(v)
    } else {
        Err(format!(
            "the time limit must be above 0 and finite, got {s}"
        ))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => run(cli.run),
        Some(Command::Check { paths, format }) => check_only(&paths, format),
        Some(Command::Explain { code }) => explain(code.as_deref()),
        Some(Command::Derive {
            path,
            check,
            append,
            emit,
            seed,
        }) => derive(&path, DeriveOutput::chosen(check, append, emit), seed),
        Some(Command::Lsp) => match dlverify::lsp::serve_stdio() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("dlverify lsp: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// The main job: every claim of every spec, checked.
fn run(cli: RunArgs) -> ExitCode {
    let options = Options {
        seed: cli.seed,
        dims: cli.dims,
        max_elements: cli.max_elements,
        fd_elements: cli.fd_elements,
        keep_derived: cli.show_grad,
        max_steps: cli.max_steps,
        samples: cli.samples,
        timeout: std::time::Duration::from_secs_f64(cli.timeout),
        taylor_precision: cli.taylor_precision.map(|p| match p {
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::F64 => Precision::F64,
        }),
        cancel: None,
        max_operations: None,
    };
    let paths = dlverify::input::expand_paths(&cli.paths);
    let progress = Progress::start(paths.len(), matches!(cli.format, Format::Human));
    let outcomes = check_all(paths, |path| check_one(path, &options), &progress);
    progress.finish();
    let text = match cli.format {
        Format::Human => report::human::render(
            &outcomes,
            HumanOptions {
                verbose: cli.verbose,
                show_grad: cli.show_grad,
                colour: colour_wanted(),
                width: terminal_width(),
            },
        ),
        Format::Json => report::json::render(&outcomes) + "\n",
        Format::Short => report::findings::render_short(&outcomes),
    };
    print(&text);
    if let Some(dir) = &cli.plot {
        match report::plot::write_plots(dir, &outcomes) {
            Ok(paths) => eprintln!("plots: {} written to {}", paths.len(), dir.display()),
            Err(e) => {
                eprintln!("dlverify: {e}");
                return ExitCode::from(2);
            }
        }
    }
    ExitCode::from(Summary::exit_code(&outcomes))
}

/// `dlverify check`: parse and analysis only.
fn check_only(paths: &[PathBuf], format: Format) -> ExitCode {
    let paths = dlverify::input::expand_paths(paths);
    let outcomes = check_all(
        paths,
        |path| match path {
            Ok(path) => dlverify::analyze_path(&path),
            Err(e) => unreadable(e),
        },
        &Progress { bar: None },
    );
    let text = match format {
        Format::Human => report::human::render_check(&outcomes),
        Format::Json => report::json::render(&outcomes) + "\n",
        Format::Short => report::findings::render_short(&outcomes),
    };
    print(&text);
    ExitCode::from(Summary::exit_code(&outcomes))
}

/// What `dlverify derive` does with lines that check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DeriveOutput {
    /// Print them, as lines of the spec or as a solution sheet.
    Print(Emit),
    /// Say only how many hold.
    Check,
    /// Add them to the spec file.
    Append,
}

impl DeriveOutput {
    fn chosen(check: bool, append: bool, emit: Emit) -> Self {
        match (check, append) {
            (true, _) => Self::Check,
            (_, true) => Self::Append,
            _ => Self::Print(emit),
        }
    }
}

/// `dlverify derive PATH`: the derived lines, each checked first.
fn derive(path: &std::path::Path, output: DeriveOutput, seed: u64) -> ExitCode {
    use dlverify::Derivation;
    if output == DeriveOutput::Append && path.as_os_str() == "-" {
        eprintln!("--append writes to the spec file: give its path, not `-`");
        return ExitCode::from(2);
    }
    let source = match dlverify::input::read_spec(path) {
        Ok(source) => source,
        Err(e) => {
            print(&report::human::render_check(&[unreadable(e)]));
            return ExitCode::from(2);
        }
    };
    let name = source.name().to_string();
    if output == DeriveOutput::Append && source.text().contains(dlverify::DERIVED_HEADER) {
        eprintln!(
            "{name}: already holds derived lines below `{}`; remove them to derive again",
            dlverify::DERIVED_HEADER
        );
        return ExitCode::from(2);
    }
    let options = Options {
        seed,
        ..Options::default()
    };
    let original = source.text().to_string();
    let derivation = dlverify::derive_source(source, &options);
    let holds = derivation.holds();
    let claims = derivation.derived_claims();
    let (count, sizes) = (claims.len(), claims.first().map_or(0, |c| c.sizes.len()));
    match derivation {
        Derivation::Invalid(outcome) => {
            print(&report::human::render_check(&[*outcome]));
            ExitCode::from(2)
        }
        Derivation::Refused(source, e) => {
            let report = miette::Report::new(e).with_source_code(source.named());
            eprintln!(
                "{name}: not derived\n{}",
                report::human::render_diagnostic(&report)
            );
            ExitCode::from(2)
        }
        Derivation::Derived { derived, check, .. } => {
            if !holds {
                eprintln!(
                    "{name}: a derived line does not check, which is a bug of `dlverify derive`; the spec with the derived lines appended:\n"
                );
                print(&report::human::render(&[*check], HumanOptions::default()));
                return ExitCode::from(1);
            }
            let block = dlverify::derived_block(&derived);
            match output {
                DeriveOutput::Check => print(&format!(
                    "{name}: {count} derived claims, each checked at {sizes} sizes\n"
                )),
                DeriveOutput::Print(Emit::Spec) => print(&block),
                DeriveOutput::Print(Emit::Markdown) => {
                    print(&dlverify::derive::sheet::markdown(
                        &sheet_title(&check, &name),
                        &derived,
                    ));
                }
                DeriveOutput::Print(Emit::Latex) => {
                    print(&dlverify::derive::sheet::latex(
                        &sheet_title(&check, &name),
                        &derived,
                    ));
                }
                DeriveOutput::Append => {
                    let text = format!("{}\n\n{block}", original.trim_end());
                    if let Err(e) = std::fs::write(path, text) {
                        eprintln!("{name}: cannot write the derived lines: {e}");
                        return ExitCode::from(2);
                    }
                    eprintln!(
                        "{name}: {count} derived claims appended, each checked at {sizes} sizes"
                    );
                }
            }
            ExitCode::SUCCESS
        }
    }
}

/// A solution sheet's title: the spec's `exercise`, else its file name.
fn sheet_title(check: &FileOutcome, name: &str) -> String {
    check.exercise.clone().unwrap_or_else(|| {
        std::path::Path::new(name)
            .file_name()
            .map_or_else(|| name.to_string(), |f| f.to_string_lossy().into_owned())
    })
}

/// `dlverify explain CODE`, or every code with its title.
fn explain(code: Option<&str>) -> ExitCode {
    use dlverify::explain;
    let Some(code) = code else {
        let mut text = String::new();
        for e in explain::all() {
            text.push_str(&format!("{:<40} {}\n", e.code, e.title));
        }
        print(&text);
        return ExitCode::SUCCESS;
    };
    match explain::explanation(code.trim()) {
        Some(e) => {
            print(&explain::render(e));
            ExitCode::SUCCESS
        }
        None => {
            let similar = explain::similar(code.trim());
            if similar.is_empty() {
                eprintln!(
                    "dlverify explain: no code `{code}`; `dlverify explain` lists every code"
                );
            } else {
                eprintln!(
                    "dlverify explain: no code `{code}`; did you mean {}?",
                    similar
                        .iter()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                );
            }
            ExitCode::from(2)
        }
    }
}

/// Colour where standard output is a terminal, unless `NO_COLOR` says
/// otherwise; anywhere where `CLICOLOR_FORCE` asks for it
/// (<https://no-color.org>, <https://bixense.com/clicolors>).
fn colour_wanted() -> bool {
    use std::io::IsTerminal;
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0");
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        return false;
    }
    set("CLICOLOR_FORCE") || std::io::stdout().is_terminal()
}

/// The terminal's width where standard output is one; `None` elsewhere,
/// so that piped output keeps each line whole.
fn terminal_width() -> Option<usize> {
    terminal_size::terminal_size_of(std::io::stdout()).map(|(w, _)| usize::from(w.0))
}

/// Writes the report; a closed pipe (`dlverify specs/ | head -1`) is the
/// reader's choice, not an error.
fn print(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// Checks the files, one per core at a time, and gives their outcomes in
/// the order named (a seed gives the same report whatever the threads).
///
/// The workers are plain threads taking the next file in turn, not rayon
/// tasks: a check's own parallel work (replays, sampling) then waits on
/// its own file, and no other file's work runs in between on the thread of
/// a claim whose time limit is running.
fn check_all(
    paths: Vec<Result<PathBuf, dlverify::input::InputError>>,
    check_one: impl Fn(Result<PathBuf, dlverify::input::InputError>) -> FileOutcome + Sync,
    progress: &Progress,
) -> Vec<FileOutcome> {
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(paths.len().max(1));
    // With more files than cores, the files keep the cores busy: each
    // worker checks its files on a pool of one thread, rather than every
    // file's inner parallel work contending for the same two cores.
    let more_files_than_workers = paths.len() > workers;
    let inner_pool = || {
        more_files_than_workers
            .then(|| rayon::ThreadPoolBuilder::new().num_threads(1).build().ok())
            .flatten()
    };
    let queue = std::sync::Mutex::new(paths.into_iter().enumerate());
    let next = || queue.lock().ok().and_then(|mut q| q.next());
    let (next, check_one) = (&next, &check_one);
    let mut done: Vec<(usize, FileOutcome)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let pool = inner_pool();
                scope.spawn(move || {
                    let mut done = vec![];
                    while let Some((i, path)) = next() {
                        let outcome = match &pool {
                            Some(pool) => pool.install(|| check_one(path)),
                            None => check_one(path),
                        };
                        done.push((i, outcome));
                        progress.done_one();
                    }
                    done
                })
            })
            .collect();
        // A check never panics on what a spec holds; were one to, the run
        // fails with it rather than leave its files out of the report.
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    done.sort_by_key(|&(i, _)| i);
    done.into_iter().map(|(_, outcome)| outcome).collect()
}

fn check_one(path: Result<PathBuf, dlverify::input::InputError>, options: &Options) -> FileOutcome {
    match path {
        Ok(path) => dlverify::check_path(&path, options),
        Err(e) => unreadable(e),
    }
}

/// A path that names no spec to read, as an outcome.
fn unreadable(e: dlverify::input::InputError) -> FileOutcome {
    let name = match &e {
        dlverify::input::InputError::NoSpecs { path }
        | dlverify::input::InputError::Unreadable { path, .. } => path.clone(),
        _ => String::new(),
    };
    FileOutcome::unreadable(name, None, miette::Report::new(e))
}

/// Files checked so far, on standard error, for a run that takes longer
/// than a second on a terminal; nothing where standard error is not a
/// terminal or the report is JSON.
struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    const DELAY: std::time::Duration = std::time::Duration::from_secs(1);

    fn start(files: usize, human: bool) -> Self {
        use std::io::IsTerminal;
        if !human || !std::io::stderr().is_terminal() {
            return Self { bar: None };
        }
        let bar = ProgressBar::with_draw_target(Some(files as u64), ProgressDrawTarget::hidden());
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} {pos}/{len} files checked, {elapsed}")
        {
            bar.set_style(style);
        }
        let shown = bar.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Self::DELAY);
            if !shown.is_finished() {
                shown.set_draw_target(ProgressDrawTarget::stderr());
                shown.enable_steady_tick(std::time::Duration::from_millis(120));
            }
        });
        Self { bar: Some(bar) }
    }

    fn done_one(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
