// SPDX-License-Identifier: Apache-2.0
/// @file
/// @brief A small fixed-size thread pool and the `executor` handle every kernel accepts.
///
/// Kernels split their work into tasks whose boundaries depend only on the problem size, never on
/// the number of threads, so results are bitwise identical for any thread count. Dispatching a
/// job does not allocate: the job is a function pointer plus a context pointer.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "../error.hpp"

namespace stochgrad {

namespace detail {
/// Test hook: when set, called with the worker's index (1 .. threads-1) before each worker thread
/// is started; a throw from it stands for a failed thread creation (fault-injection tests only).
inline void (*thread_pool_spawn_hook)(unsigned) = nullptr;
}  // namespace detail

/// A fixed set of worker threads that run index-parallel jobs. The calling thread takes part, so
/// `thread_pool(1)` has no workers and runs everything inline. Jobs must not throw.
class thread_pool {
 public:
  /// Largest accepted thread count (a larger value is almost certainly a wrapped or garbage size).
  static constexpr unsigned max_threads = 4096;

  /// Creates a pool that runs jobs on `threads` threads in total (the caller plus threads - 1
  /// workers). Exception-safe: if starting a worker fails, the workers already started are
  /// stopped and joined before the error propagates.
  /// @throws invalid_argument if threads == 0 or threads > max_threads; error (with the system's
  ///         reason) if the operating system refuses to start a thread.
  explicit thread_pool(unsigned threads) : size_(threads) {
    detail::require(threads >= 1 && threads <= max_threads, "thread_pool", "threads", threads, "in [1, 4096]");
    workers_.reserve(threads - 1);
    try {
      for (unsigned i = 1; i < threads; ++i) {
        if (detail::thread_pool_spawn_hook != nullptr) detail::thread_pool_spawn_hook(i);
        workers_.emplace_back([this] { worker_loop(); });
      }
    } catch (const std::system_error& e) {
      stop_workers();
      throw error(std::string("thread_pool: starting worker ") + std::to_string(workers_.size() + 1) + " of " +
                  std::to_string(threads - 1) + " failed: " + e.what());
    } catch (...) {
      stop_workers();
      throw;
    }
  }

  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  ~thread_pool() { stop_workers(); }

  /// Threads taking part in a job, the caller included.
  unsigned size() const noexcept { return size_; }

  /// Runs `fn(task)` for every task in [0, n_tasks), spread over the pool, and returns when all
  /// are done. Tasks run in no particular order; `fn` must be safe to call concurrently and must
  /// not throw. Not reentrant: do not call `run` from inside a task.
  template <class F>
  void run(std::size_t n_tasks, F&& fn) {
    if (n_tasks == 0) return;
    using Fn = std::remove_reference_t<F>;
    if (size_ == 1 || n_tasks == 1) {
      for (std::size_t t = 0; t < n_tasks; ++t) fn(t);
      return;
    }
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      call_ = [](void* ctx, std::size_t t) { (*static_cast<Fn*>(ctx))(t); };
      ctx_ = const_cast<void*>(static_cast<const void*>(&fn));
      n_tasks_ = n_tasks;
      next_.store(0, std::memory_order_relaxed);
      done_.store(0, std::memory_order_relaxed);
      ++generation_;
    }
    wake_.notify_all();
    work(call_, ctx_, n_tasks);
    std::unique_lock<std::mutex> lock(mutex_);
    finished_.wait(lock, [&] { return done_.load(std::memory_order_acquire) == n_tasks && active_ == 0; });
    n_tasks_ = 0;
  }

 private:
  void stop_workers() noexcept {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      ++generation_;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }

  void work(void (*call)(void*, std::size_t), void* ctx, std::size_t n) {
    for (;;) {
      const std::size_t t = next_.fetch_add(1, std::memory_order_relaxed);
      if (t >= n) return;
      call(ctx, t);
      if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == n) {
        std::lock_guard<std::mutex> lock(mutex_);
        finished_.notify_all();
      }
    }
  }

  void worker_loop() {
    std::size_t seen = 0;
    for (;;) {
      void (*call)(void*, std::size_t) = nullptr;
      void* ctx = nullptr;
      std::size_t n = 0;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (stop_) return;
        if (n_tasks_ == 0) continue;
        // Registered under the lock: the caller does not return (and cannot publish another job)
        // until every worker that joined this one has left it.
        ++active_;
        call = call_;
        ctx = ctx_;
        n = n_tasks_;
      }
      work(call, ctx, n);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (--active_ == 0) finished_.notify_all();
      }
    }
  }

  unsigned size_;
  std::vector<std::thread> workers_;
  std::mutex run_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable finished_;
  std::size_t generation_ = 0;
  bool stop_ = false;
  void (*call_)(void*, std::size_t) = nullptr;
  void* ctx_ = nullptr;
  std::size_t n_tasks_ = 0;
  unsigned active_ = 0;
  std::atomic<std::size_t> next_{0};
  std::atomic<std::size_t> done_{0};
};

/// Where a kernel runs: inline on the calling thread (the default) or on a thread_pool.
/// Cheap to copy; does not own the pool.
class executor {
 public:
  /// Runs on the calling thread.
  constexpr executor() noexcept = default;
  /// Runs on `pool` (which must outlive every kernel call that uses this executor).
  executor(thread_pool& pool) noexcept : pool_(&pool) {}  // NOLINT: implicit by design

  /// Threads a job may use.
  unsigned concurrency() const noexcept { return pool_ ? pool_->size() : 1u; }

  /// Runs fn(task) for task in [0, n_tasks).
  template <class F>
  void run(std::size_t n_tasks, F&& fn) const {
    if (pool_ != nullptr) {
      pool_->run(n_tasks, std::forward<F>(fn));
    } else {
      for (std::size_t t = 0; t < n_tasks; ++t) fn(t);
    }
  }

 private:
  thread_pool* pool_ = nullptr;
};

}  // namespace stochgrad
