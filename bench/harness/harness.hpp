// SPDX-License-Identifier: Apache-2.0
// stochgrad shoot-out harness: the types shared by its translation units.
//
// A *problem instance* (quadratic-1M, rosenbrock-10, logreg-cancer, ...) and a *stepper entry*
// (ref-gd, ref-zo-sgd, later mezo, adan, ...) make a *runner* when the stepper applies to the
// problem (first-order steppers need an exact gradient; zeroth-order ones see only losses).
// Every runner is run once per seed; the harness owns the loop, the clock, the memory probe,
// the curve recording and the gradient-quality measurement, so a stepper only has to provide a
// `driver<T>`: construct from a `run_setup`, `step(x, oracle)`, and optionally `estimate(...)`.
#pragma once

#include <stochgrad/bits/outcome/group_layout.hpp>
#include <stochgrad/bits/parallel/thread_pool.hpp>
#include <stochgrad/bits/problems/idx.hpp>
#include <stochgrad/bits/rng/noise.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace harness {

inline constexpr double nan = std::numeric_limits<double>::quiet_NaN();

/// What a stepper needs from a problem.
enum class family { first_order, zeroth_order, policy_gradient };
const char* to_string(family f) noexcept;

/// Parameter type of a problem instance.
enum class precision { f32, f64 };
const char* to_string(precision p) noexcept;

/// Run length and measurement density.
enum class mode { smoke, quick, full };
const char* to_string(mode m) noexcept;

/// A user error on the command line (exit status 2).
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// What a problem reports at a point (NaN where it does not apply).
struct eval_point {
  double objective = nan;  ///< training objective (loss / f(x)); reward tasks: 1 - expected reward
  double accuracy = nan;   ///< test accuracy (classifiers); greedy accuracy (reward tasks)
  double test_loss = nan;  ///< test loss (classifiers)
  double reward = nan;     ///< exact expected reward of the sampling policy (reward tasks)
};

/// A problem instance in parameter type T, type-erased for the drivers.
template <class T>
class problem {
 public:
  virtual ~problem() = default;
  virtual std::size_t dimension() const = 0;
  virtual bool has_gradient() const = 0;
  virtual void initial_point(std::span<T> x, std::uint64_t seed) const = 0;
  virtual double loss(std::span<const T> x, const stochgrad::executor& ex) = 0;
  /// Exact gradient (only when has_gradient()).
  virtual double loss_and_gradient(std::span<const T> x, std::span<T> g, const stochgrad::executor& ex) = 0;
  virtual eval_point evaluate(std::span<const T> x, const stochgrad::executor& ex) = 0;
  /// Where gradient estimates are scored (problem_info::quality_at): writes the point and returns
  /// true, or returns false for the initial point.
  virtual bool quality_point(std::span<T> /*x*/) const { return false; }
};

/// A generation batch of a reward task: P prompts x G sampled completions of `length()` tokens,
/// with their rewards and per-token log-probabilities (row-major [N x L], N = P G), in the shape a
/// policy-gradient stepper takes them. Made by `reward_task::make_batch`; no allocation per draw.
template <class T>
class rollout_batch {
 public:
  virtual ~rollout_batch() = default;
  /// Fresh prompts (stream `prompts`) and completions sampled from the policy at `theta` (stream
  /// `completions`): a pure function of the keys and theta.
  virtual void draw(std::span<const T> theta, const stochgrad::noise_key& prompts,
                    const stochgrad::noise_key& completions) = 0;
  /// Recomputes `logp()` of the current completions under `theta` (PPO iterations).
  virtual void rescore(std::span<const T> theta) = 0;
  /// Vector-Jacobian product: grad += sum_t coef[t] d logp[t] / d theta at `theta`.
  virtual void vjp(std::span<const T> theta, std::span<const T> coef, std::span<T> grad) const = 0;
  virtual std::size_t length() const = 0;
  virtual std::span<const T> rewards() const = 0;
  virtual std::span<const T> logp() const = 0;
  /// The grouping: prompt p owns completions [p G, (p + 1) G).
  virtual const stochgrad::group_layout& layout() const = 0;
};

/// A verifiable-reward task (policy-gradient family). As a `problem` its objective is
/// 1 - J(theta), J the exact expected reward of the sampling policy over the prompt
/// distribution, with its exact gradient (used only to score gradient estimates and to record
/// curves); policy-gradient drivers see only sampled batches (`make_batch`).
template <class T>
class reward_task : public problem<T> {
 public:
  /// A batch buffer for P prompts x G completions.
  virtual std::unique_ptr<rollout_batch<T>> make_batch(std::size_t prompts, std::size_t group) const = 0;
};

/// What a stepper may ask of the problem during a run: losses (counted) and, for first-order
/// steppers only, exact gradients (counted). Zeroth-order steppers that ask for a gradient get a
/// std::logic_error: they only ever see losses.
template <class T>
class oracle {
 public:
  oracle(problem<T>& p, family f, const stochgrad::executor& ex) : p_(&p), family_(f), ex_(ex) {}
  std::size_t dimension() const { return p_->dimension(); }
  const stochgrad::executor& executor() const noexcept { return ex_; }
  double loss(std::span<const T> x) {
    ++losses_;
    return p_->loss(x, ex_);
  }
  double loss_and_gradient(std::span<const T> x, std::span<T> g) {
    if (family_ != family::first_order || !p_->has_gradient()) {
      throw std::logic_error("harness: only first-order steppers on differentiable problems get gradients");
    }
    ++gradients_;
    return p_->loss_and_gradient(x, g, ex_);
  }
  /// The reward task (policy-gradient steppers only; others get a std::logic_error).
  reward_task<T>& task() const {
    auto* t = dynamic_cast<reward_task<T>*>(p_);
    if (family_ != family::policy_gradient || t == nullptr) {
      throw std::logic_error("harness: only policy-gradient steppers on reward tasks draw rollouts");
    }
    return *t;
  }
  /// Counts sampled completions (policy-gradient drivers call it once per generation batch).
  void count_completions(std::uint64_t n) noexcept { completions_ += n; }
  std::uint64_t losses() const noexcept { return losses_; }
  std::uint64_t gradients() const noexcept { return gradients_; }
  std::uint64_t completions() const noexcept { return completions_; }

 private:
  problem<T>* p_;
  family family_;
  stochgrad::executor ex_;
  std::uint64_t losses_ = 0;
  std::uint64_t gradients_ = 0;
  std::uint64_t completions_ = 0;
};

/// Hyper-parameters of one runner: name -> value.
using hyper_map = std::map<std::string, double>;

/// Everything a driver is constructed from.
struct run_setup {
  std::string problem;          ///< instance name
  std::string problem_family;   ///< e.g. "quadratic"
  std::string stepper;          ///< stepper name
  std::uint64_t seed = 0;       ///< run seed
  std::size_t dimension = 0;    ///< number of parameters
  std::size_t steps = 0;        ///< step budget of this run
  hyper_map hyper;              ///< merged hyper-parameters (defaults, problem overrides, --set)
  stochgrad::executor ex;       ///< where kernels run
  /// The hyper-parameter `name`; throws std::invalid_argument naming the runner if absent.
  double hp(const std::string& name) const;
  /// The hyper-parameter `name`, or `fallback`.
  double hp_or(const std::string& name, double fallback) const;
};

/// One stepper inside one run. `prepare` is called once with the run's parameter buffer before
/// the first step (off the clock, inside the memory measurement: bind a library stepper to x
/// there); `step` advances x in place (always the same buffer); `estimate` (optional) writes one
/// gradient estimate at x for the gradient-quality report (x may be perturbed in between but must
/// be restored; `sample` numbers the estimates and must select the randomness so that the same
/// sample gives the same estimate; it must not disturb the run's own random stream). `estimate`
/// is called on a fresh driver that never saw `prepare`.
template <class T>
class driver {
 public:
  virtual ~driver() = default;
  virtual void prepare(std::span<T> /*x*/, oracle<T>& /*f*/) {}
  virtual void step(std::span<T> x, oracle<T>& f) = 0;
  virtual bool estimate(std::span<T> /*x*/, oracle<T>& /*f*/, std::uint64_t /*sample*/, std::span<T> /*g*/) {
    return false;
  }
};

/// Per-problem hyper-parameter table: key "*" (all problems), a problem family, or an instance
/// name; more specific keys override less specific ones.
using hyper_table = std::vector<std::pair<std::string, hyper_map>>;

struct problem_info;

/// A registered stepper.
struct stepper_info {
  std::string name{};                ///< CLI / report name, e.g. "mezo+adan"
  family fam = family::first_order;  ///< what it needs from the problem
  std::string description{};         ///< one line for --list and the JSON
  bool reference = false;            ///< a harness reference loop, not a library stepper
  hyper_table hyper{};               ///< default hyper-parameters
  /// Multiplies every problem's step budget for this stepper (e.g. 1/q for a stepper that spends
  /// q query pairs per step, to compare at equal numbers of evaluations). Ignored with --steps.
  double step_scale = 1.0;
  /// Name of a hyper-parameter (after --set) that divides the budget too, e.g. "q" for a stepper
  /// that spends q query pairs per step; empty: none. Ignored with --steps.
  std::string budget_divisor{};
  /// Extra applicability test (besides family/gradient compatibility); empty = always.
  std::function<bool(const problem_info&)> applies{};
  /// Set by registry::add_stepper.
  std::function<std::unique_ptr<driver<float>>(const run_setup&)> make_f32{};
  std::function<std::unique_ptr<driver<double>>(const run_setup&)> make_f64{};
};

/// Step budgets of a problem per mode.
struct budget {
  std::size_t smoke = 20;
  std::size_t quick = 1000;
  std::size_t full = 10000;
  std::size_t in(mode m) const noexcept { return m == mode::smoke ? smoke : m == mode::quick ? quick : full; }
};

/// When a run counts as having reached the problem's target.
struct target_spec {
  enum class metric { objective_gap, relative_gap, objective, accuracy, reward } what = metric::objective_gap;
  double value = 0.0;  ///< threshold: gap <= value, relative gap <= value, f <= value, accuracy/reward >= value
  std::string accuracy_name = "test accuracy";  ///< what `accuracy` is, for the description
  std::string describe() const;
  bool reached(const eval_point& p, double optimum, double initial_gap) const;
};

/// A registered problem instance.
struct problem_info {
  std::string name;         ///< e.g. "quadratic-1M"
  std::string family;       ///< e.g. "quadratic"
  std::string description;  ///< one line
  std::string data_note;    ///< how the data was subsampled (e.g. "n_train = 6000 of 60000"); empty: all of it
  std::size_t dimension = 0;
  precision prec = precision::f64;
  bool has_gradient = true;
  bool classifier = false;                      ///< reports test accuracy
  bool policy = false;                          ///< a reward task (policy-gradient steppers)
  double optimum = nan;                         ///< known minimum of the objective (NaN: unknown)
  std::string curve_label = "objective";        ///< y label of the convergence plot
  std::size_t points = 0;                       ///< recorded points per run (0: the mode's default)
  std::string quality_at = "initial point";     ///< where gradient estimates are scored (problem::quality_point)
  target_spec target;
  budget steps;
  double step_cost_us = 1.0;                    ///< rough time of one step (progress-bar ETA only)
  std::function<std::unique_ptr<problem<float>>()> make_f32;
  std::function<std::unique_ptr<problem<double>>()> make_f64;
};

/// The registry of problems and steppers; runners are the applicable pairs.
class registry {
 public:
  /// Registers stepper `D<T>` (a driver<T> constructible from `const run_setup&`), for float
  /// and double problems.
  template <template <class> class D>
  stepper_info& add_stepper(stepper_info info) {
    info.make_f32 = [](const run_setup& s) -> std::unique_ptr<driver<float>> { return std::make_unique<D<float>>(s); };
    info.make_f64 = [](const run_setup& s) -> std::unique_ptr<driver<double>> {
      return std::make_unique<D<double>>(s);
    };
    steppers_.push_back(std::move(info));
    return steppers_.back();
  }
  void add_problem(problem_info p) { problems_.push_back(std::move(p)); }
  /// Records a problem that is not available in this build or on this machine, with the reason
  /// (printed before the runs and shown in the reports; never replaced by a stand-in).
  void skip_problem(std::string name, std::string reason) { skipped_.emplace_back(std::move(name), std::move(reason)); }
  const std::vector<std::pair<std::string, std::string>>& skipped() const noexcept { return skipped_; }

  const std::vector<problem_info>& problems() const noexcept { return problems_; }
  const std::vector<stepper_info>& steppers() const noexcept { return steppers_; }
  /// Whether stepper s runs on problem p.
  static bool applies(const stepper_info& s, const problem_info& p);
  /// Hyper-parameters of the runner (s, p): "*" < family < instance name.
  static hyper_map hyper_for(const stepper_info& s, const problem_info& p);
  /// hyper_for plus the command line's `--set S.NAME=V` and `S@PROBLEM.NAME=V` (PROBLEM: instance
  /// name or family), in command-line order.
  static hyper_map hyper_for(const stepper_info& s, const problem_info& p,
                             const std::vector<std::pair<std::string, double>>& sets);
  /// Step budget of the runner in mode m (--steps, else the problem's budget x step_scale /
  /// budget_divisor, at least 1).
  static std::size_t steps_for(const stepper_info& s, const problem_info& p, mode m, std::size_t steps_option,
                               const hyper_map& hyper);

 private:
  std::vector<problem_info> problems_;
  std::vector<stepper_info> steppers_;
  std::vector<std::pair<std::string, std::string>> skipped_;
};

/// Command-line configuration.
struct options {
  mode run_mode = mode::quick;
  bool list = false;
  bool kernels = false;
  bool spsa_grid = false;              ///< --spsa-grid: calibrated spsa vs a gain grid of spall-spsa
  std::size_t kernel_n = 10'000'000;
  std::vector<std::string> problems;   ///< selection tokens (empty: all)
  std::vector<std::string> steppers;   ///< selection tokens (empty: all)
  std::vector<std::uint64_t> seeds;    ///< empty: mode default
  std::map<std::string, std::vector<std::size_t>> dims;  ///< family -> dimensions
  double condition = 1e3;              ///< quadratic condition number
  std::size_t rotate_up_to = 2000;     ///< quadratics up to this dimension are rotated
  std::size_t steps = 0;               ///< 0: per problem and mode
  std::string precision_choice = "auto";
  std::vector<std::pair<std::string, double>> sets;  ///< "stepper[@problem].param" -> value
  unsigned threads = 0;                ///< 0: hardware concurrency
  std::size_t grad_samples = default_samples;  ///< estimates per quality measurement (< 2: off)
  static constexpr std::size_t default_samples = static_cast<std::size_t>(-1);  ///< mode default
  std::string out = "shootout-out";
  std::string data_dir;
  std::string fashion_dir;             ///< Fashion-MNIST idx .gz files
  bool progress = true;
  std::vector<std::string> argv;       ///< the command line, for the report
};

/// Parses argv; throws usage_error. Returns false if --help was printed.
bool parse_options(int argc, char** argv, options& o);
void print_help();

/// Builds the problem instances for the options (datasets are loaded lazily by the factories).
void register_problems(registry& r, const options& o);
/// The harness's own reference loops (ref-gd, ref-zo-sgd).
void register_reference_steppers(registry& r);
/// The library's steppers and compositions (adan, mezo, spsa, grpo, bnpo, ...).
void register_library_steppers(registry& r);

/// One recorded point of a convergence curve.
struct curve_point {
  std::size_t step = 0;
  eval_point at;
  double time_s = 0.0;  ///< cumulative stepping time when recorded
};

/// Gradient-estimate quality at problem_info::quality_at (the initial point unless the problem
/// says otherwise) over K estimates g_k of the true gradient g:
/// cos_mean = mean_k cos(g_k, g); cos_of_mean = cos(mean_k g_k, g);
/// rel_var = sum_k |g_k - mean|^2 / ((K - 1) |g|^2) (trace of the covariance over |g|^2);
/// rel_bias = |mean - g| / |g|.
struct grad_quality {
  bool measured = false;
  std::string at;  ///< where (problem_info::quality_at)
  std::size_t samples = 0;
  double cos_mean = nan, cos_of_mean = nan, rel_var = nan, rel_bias = nan;
};

/// Result of one (problem, stepper, seed) run.
struct run_result {
  std::string problem, stepper;
  std::uint64_t seed = 0;
  std::size_t dimension = 0;
  precision prec = precision::f64;
  hyper_map hyper;
  std::size_t steps_budget = 0;
  std::size_t steps_done = 0;
  std::string status = "ok";  ///< ok | diverged | error
  std::string message;
  eval_point initial, final_point;
  double initial_gap = nan;
  std::size_t steps_to_target = 0;  ///< valid if reached_target
  std::uint64_t losses_to_target = 0;  ///< loss evaluations by then (valid if reached_target)
  bool reached_target = false;
  double time_to_target_s = nan;
  double step_time_s = 0.0;  ///< time inside step() calls
  double wall_s = 0.0;       ///< the whole run, recording and measurements included
  double updates_per_s = nan;
  std::uint64_t losses = 0, gradients = 0, completions = 0;
  double peak_rss_mb = nan, peak_delta_mb = nan;
  std::string memory_method;
  grad_quality quality;
  std::vector<curve_point> curve;
};

/// Progress callback: fraction of the current run done.
using progress_fn = std::function<void(double fraction_of_run, std::size_t step)>;

/// A problem instance built from its problem_info, in its precision (the other pointer is null).
/// Built once per problem and shared by all of its runs: problems are deterministic.
struct problem_instance {
  std::unique_ptr<problem<float>> f32;
  std::unique_ptr<problem<double>> f64;
};

/// Builds the instance (loads datasets); throws stochgrad::error subclasses on bad data.
problem_instance instantiate(const problem_info& p);

/// Runs one runner for one seed. Every run of a problem starts from the same initial point
/// (problem seed 0); the run seed drives the stepper's randomness only.
run_result execute(const problem_info& p, problem_instance& inst, const stepper_info& s, std::uint64_t seed,
                   const options& o, std::size_t steps, std::size_t grad_samples, stochgrad::executor ex,
                   const progress_fn& progress);

/// `--spsa-grid`: on each selected zeroth-order problem, the calibrated `spsa` (no setting) and
/// `spall-spsa` over a grid of gains a (A = 10 % of the budget, c = 1e-3), every seed; prints the
/// table of final f and evaluations to the target (and writes it to DIR/spsa-grid.txt).
/// Returns the exit status.
int run_spsa_grid(const registry& reg, const std::vector<const problem_info*>& problems, const options& o,
                  const std::vector<std::uint64_t>& seeds, stochgrad::executor ex);

/// Everything the reports need.
struct report_input {
  const options* opts = nullptr;
  std::vector<const problem_info*> problems;
  std::vector<const stepper_info*> steppers;
  std::vector<std::uint64_t> seeds;
  unsigned threads = 1;
  std::size_t grad_samples = 0;
  std::vector<run_result> runs;
  double total_wall_s = 0.0;
  std::vector<std::pair<std::string, std::string>> skipped;  ///< (problem, reason) not run in this build
};

/// The terminal table (also written to summary.txt).
std::string format_table(const report_input& in);
/// Writes results.json, results.csv, curves.csv, summary.txt, plot-*.svg, index.html; returns
/// the paths written.
std::vector<std::string> write_reports(const report_input& in, const std::string& table);

/// Prints the kernel throughput table (the `--kernels` section).
void run_kernel_table(std::size_t n, unsigned threads);

/// Reads a gzip-compressed idx file (zlib; bench/harness/idx_gz.cpp), parsed by
/// stochgrad::problems::parse_idx with `dims` dimensions. Throws stochgrad::problems::data_error
/// naming the file. Only available when the harness was built with zlib.
stochgrad::problems::idx_array read_idx_gz(const std::string& path, std::size_t dims);
/// Whether the harness was built with zlib (read_idx_gz works).
bool have_zlib() noexcept;

/// Human dimension: 1000 -> "1k", 1000000 -> "1M", 1234 -> "1234".
std::string short_count(std::size_t n);

}  // namespace harness
