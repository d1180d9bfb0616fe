// The GLIF time loop as XLA FFI custom calls for the CPU (the GLIF paper's neuron equations), used by glif_jax.cpu_kernel.
//
// The same recurrence as glif_jax/neuron.py, in the coefficient form computed there:
//
//   membrane = decay * membrane_prev * (1 - reset_gate * spike_prev) - leak
//              + input_gain[t] * input[t] - soft_reset * spike_prev
//   spike    = H(membrane - threshold)
//
// term by term in this order, with no fused multiply-adds (-ffp-contract=off), so float32 and
// float64 results are bit-identical to these equations evaluated in NumPy. Why a kernel: XLA:CPU
// runs the time loop as T passes over memory (the membrane is stored and reloaded every step).
// Here the forward runs all T steps of a block of elements with the state in registers, reading
// the inputs and writing the spikes at T strides (one pass over memory, like a copy), and the
// backward runs all T steps back over a block the same way.
//
// Shapes (leading batch dims [G...] appear under jax.vmap and are looped over):
//   inputs, spikes, membranes, grad_*  [G..., T, N, C]   (N = everything between time and channels)
//   coefficients                       [G..., 5, C]      decay, reset_gate, leak, soft_reset, threshold
//   input_gain                         [G..., T, C]
//   membrane0, spike0                  [G..., N, C]      (or placeholders: start from zeros)

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "xla/ffi/api/ffi.h"

#if defined(__x86_64__)
#include <emmintrin.h>  // SSE2 non-temporal stores: every x86-64 has them
#endif

namespace ffi = xla::ffi;

namespace {

enum Coefficient { kDecay, kResetGate, kLeak, kSoftReset, kThreshold, kCoefficients };

// Coefficients are laid out for a "run" of whole rows, about kRun elements (the per-channel values
// repeated per row), so that a block of elements finds its coefficients side by side whatever C is.
constexpr int64_t kRun = 256;
// Backward: elements per tile, over which the parameter sums run in F (then in double).
constexpr int64_t kBackwardTile = 2048;
// Outputs (spikes, membranes; the inputs' gradient) of at least kStreamBytes go to memory with
// non-temporal stores: no read for ownership, a third less memory traffic (measured faster here
// down to 0.5 MiB, also with a consumer reading the spikes right after; smaller outputs may stay
// in a cache).
constexpr int64_t kStreamBytes = int64_t(1) << 20;
// The backward reads T membranes, inputs and incoming gradients per block: it prefetches each
// this far ahead (measured here: 1.35x faster at T = 16, 1.2x at T = 4; 256 B to 1 KiB alike).
constexpr int64_t kPrefetchBytes = 512;
// Tiles are grouped into chunks of at least kChunkWork element-steps, at most kMaxChunks per
// problem; chunks are the parallel tasks and the units of the backward's partial sums, which
// are added in chunk order (deterministic).
constexpr int64_t kMaxChunks = 32;
constexpr int64_t kChunkWork = 16384;

// Elements run all T steps together in blocks of one cache line, whose state stays in registers:
// one AVX-512 register, two AVX2 or four SSE ones. Every line read or written is used whole at
// once (with narrower blocks, T streams a multiple of 4 KiB apart evict each other's lines from
// their shared cache set before the next block comes back to them: 5-10x slower at T = 16). The
// hot loops are compiled for the three x86 levels and the best one the CPU has is used, or a
// lower one that GLIF_JAX_CPU_ISA names (avx2, baseline). (Vector types wider than the registers,
// which GCC splits piecewise, ran 3-6x slower than that.) Everything they call is inlined, so
// compiled for their level.
constexpr int kLineBytes = 64;
#define GLIF_INLINE inline __attribute__((always_inline))
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define GLIF_X86_LEVELS 1
#define GLIF_TARGET(arch) __attribute__((target(arch)))
#else
#define GLIF_X86_LEVELS 0
#define GLIF_TARGET(arch)
#endif

enum Isa { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };

Isa ChosenIsa() {
  static const Isa isa = [] {
    Isa best = kBaseline;
#if GLIF_X86_LEVELS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4"))
      best = kAvx512;
    else if (__builtin_cpu_supports("x86-64-v3"))
      best = kAvx2;
#endif
    const char* asked = std::getenv("GLIF_JAX_CPU_ISA");  // checked by glif_jax.cpu_kernel
    if (asked && std::strcmp(asked, "baseline") == 0) return kBaseline;
    if (asked && std::strcmp(asked, "avx2") == 0) return std::min(best, kAvx2);
    return best;
  }();
  return isa;
}

enum Surrogate { kRectangular = 0, kSigmoid = 1, kArctan = 2, kTriangle = 3 };

// Runs body(task) for every task in [0, tasks) on the calling thread and XLA's intra-op pool.
// Workers take tasks from a shared counter, so the caller waits only for tasks that a running
// thread has started (no deadlock when the pool is busy); late workers find nothing to do.
template <typename Body>
void ParallelFor(ffi::ThreadPool& pool, int64_t tasks, const Body& body) {
  struct Shared {
    explicit Shared(int64_t n, const Body& b) : tasks(n), body(b) {}
    const int64_t tasks;
    const Body& body;  // only used while tasks remain, i.e. while the caller waits
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
    std::mutex mutex;
    std::condition_variable finished;
  };
  if (tasks <= 0) return;
  auto shared = std::make_shared<Shared>(tasks, body);
  auto work = [shared]() {
    int64_t count = 0;
    for (int64_t task; (task = shared->next.fetch_add(1)) < shared->tasks; ++count) shared->body(task);
    if (count > 0 && shared->done.fetch_add(count) + count == shared->tasks) {
      std::lock_guard<std::mutex> lock(shared->mutex);
      shared->finished.notify_all();
    }
  };
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), tasks) - 1;
  for (int64_t i = 0; i < helpers; ++i) pool.Schedule(decltype(work)(work));
  work();
  std::unique_lock<std::mutex> lock(shared->mutex);
  shared->finished.wait(lock, [&] { return shared->done.load() == shared->tasks; });
}

struct Layout {
  int64_t problems, time_steps, rows, channels;  // G, T, N, C
  int64_t tile;                                   // elements per tile, about (at least one run)
  int64_t elements() const { return rows * channels; }  // per step
  int64_t run_rows() const { return std::max<int64_t>(1, kRun / std::max<int64_t>(1, channels)); }
  int64_t run_elements() const { return run_rows() * channels; }
  // a tile is whole runs (but the last tile of a problem may end in a shorter run)
  int64_t tile_rows() const { return run_rows() * std::max<int64_t>(1, tile / run_elements()); }
  int64_t tiles() const { return (rows + tile_rows() - 1) / tile_rows(); }
  int64_t chunks() const {
    return std::max<int64_t>(1, std::min({tiles(), kMaxChunks, time_steps * elements() / kChunkWork}));
  }
  // tiles [first_tile(k), first_tile(k + 1)) make chunk k
  int64_t first_tile(int64_t chunk) const { return chunk * tiles() / chunks(); }
  // outputs of `bytes`-sized elements go to memory with non-temporal stores: large enough, and
  // every step of a run starts 16-byte aligned where its first step does
  bool stream_outputs(int64_t bytes) const {
    return time_steps * elements() * bytes >= kStreamBytes && (elements() * bytes) % 16 == 0;
  }
};

// The coefficients of one problem laid out for one run: kCoefficients rows, then T rows of
// input gain, each of run_elements() (the C per-channel values repeated run_rows() times).
template <typename F>
std::vector<F> RunCoefficients(const Layout& s, const F* coefficients, const F* input_gain) {
  const int64_t C = s.channels, L = s.run_elements();
  std::vector<F> laid_out((kCoefficients + s.time_steps) * L);
  for (int64_t row = 0; row < kCoefficients + s.time_steps; ++row) {
    const F* values = row < kCoefficients ? coefficients + row * C : input_gain + (row - kCoefficients) * C;
    for (int64_t k = 0; k < L; k += C) std::copy(values, values + C, &laid_out[row * L + k]);
  }
  return laid_out;
}

template <typename F>
struct ForwardBuffers {
  const F *inputs, *coefficients, *input_gain, *membrane0, *spike0;  // membrane0, spike0 null: zeros
  F *spikes, *membranes;                                             // membranes may be null
  bool stream;  // outputs go to memory with non-temporal stores, where a run is aligned (Layout)
};

// kBytes of elements, one vector register. (Blocks are passed only between inlined functions:
// GCC's note that their ABI differs by AVX level is moot.)
#pragma GCC diagnostic ignored "-Wpsabi"
template <typename F, int kBytes>
struct BlockOf {
  typedef F type __attribute__((vector_size(kBytes)));
};

template <typename V, typename F>
GLIF_INLINE V Load(const F* from) {
  V value;
  std::memcpy(&value, from, sizeof(V));
  return value;
}

#if defined(__x86_64__)
GLIF_INLINE void StreamStore16(float* to, const float* from) { _mm_stream_ps(to, _mm_load_ps(from)); }
GLIF_INLINE void StreamStore16(double* to, const double* from) { _mm_stream_pd(to, _mm_load_pd(from)); }
#endif

// stream: non-temporal, `to` 16-byte aligned (single elements are always stored plainly)
template <typename V, typename F>
GLIF_INLINE void Store(F* to, const V& value, bool stream) {
#if defined(__x86_64__)
  if (sizeof(V) % 16 == 0 && stream) {
    alignas(64) F lanes[sizeof(V) / sizeof(F)];
    std::memcpy(lanes, &value, sizeof(V));
    for (size_t k = 0; k < sizeof(V) / sizeof(F); k += 16 / sizeof(F)) StreamStore16(to + k, lanes + k);
    return;
  }
#endif
  std::memcpy(to, &value, sizeof(V));
}

bool Aligned16(const void* pointer) { return (reinterpret_cast<uintptr_t>(pointer) & 15) == 0; }

// All T steps of kParts * |V| elements from `at` (step 0's offset) and `state` (in membrane0 /
// spike0): V is a vector register of elements (BlockOf) or a single element (F), kParts of them in
// registers side by side. `coefficients` points at their position in the laid-out run
// coefficients, rows of `run` values. A zero initial state enters the same formula as zeros
// (exactly gain * x - leak).
template <typename V, int kParts, typename F, bool kKeepMembranes>
GLIF_INLINE void ForwardSeries(const Layout& s, const ForwardBuffers<F>& b, const F* coefficients, int64_t run,
                               int64_t at, int64_t state, bool stream) {
  constexpr int64_t kWidth = sizeof(V) / sizeof(F);
  const int64_t M = s.elements();
  const V zero = V{}, one = zero + F(1);
  V decay[kParts], reset_gate[kParts], leak[kParts], soft_reset[kParts], threshold[kParts], membrane[kParts],
      spike[kParts];
#pragma GCC unroll 4
  for (int i = 0; i < kParts; ++i) {
    const F* c = coefficients + i * kWidth;
    decay[i] = Load<V>(c + kDecay * run), reset_gate[i] = Load<V>(c + kResetGate * run);
    leak[i] = Load<V>(c + kLeak * run), soft_reset[i] = Load<V>(c + kSoftReset * run);
    threshold[i] = Load<V>(c + kThreshold * run);
    membrane[i] = b.membrane0 ? Load<V>(b.membrane0 + state + i * kWidth) : zero;
    spike[i] = b.spike0 ? Load<V>(b.spike0 + state + i * kWidth) : zero;
  }
  for (int64_t t = 0; t < s.time_steps; ++t, at += M) {
#pragma GCC unroll 4
    for (int i = 0; i < kParts; ++i) {
      const int64_t element = at + i * kWidth;
      const V gain = Load<V>(coefficients + (kCoefficients + t) * run + i * kWidth), x = Load<V>(b.inputs + element);
      membrane[i] = decay[i] * membrane[i] * (F(1) - reset_gate[i] * spike[i]) - leak[i] + gain * x -
                    soft_reset[i] * spike[i];
      spike[i] = membrane[i] > threshold[i] ? one : zero;
      Store<V>(b.spikes + element, spike[i], stream);
      if (kKeepMembranes) Store<V>(b.membranes + element, membrane[i], stream);
    }
  }
}

template <typename F, bool kKeepMembranes, int kBytes>
GLIF_INLINE void ForwardChunk(const Layout& s, const ForwardBuffers<F>& b, int64_t problem, int64_t chunk) {
  using Vector = typename BlockOf<F, kBytes>::type;
  constexpr int kParts = kLineBytes / kBytes;
  constexpr int64_t kWidth = kLineBytes / sizeof(F);
  const int64_t C = s.channels, M = s.elements(), T = s.time_steps, L = s.run_elements();
  const std::vector<F> laid_out = RunCoefficients<F>(s, b.coefficients + problem * kCoefficients * C,
                                                     b.input_gain + problem * T * C);
  const int64_t begin = std::min(s.first_tile(chunk) * s.tile_rows(), s.rows) * C;
  const int64_t end = std::min(s.first_tile(chunk + 1) * s.tile_rows(), s.rows) * C;
  for (int64_t run_begin = begin; run_begin < end; run_begin += L) {
    const int64_t n = std::min(L, end - run_begin), at = problem * T * M + run_begin, state = problem * M + run_begin;
    const bool stream_run = b.stream && Aligned16(b.spikes + at) && (!kKeepMembranes || Aligned16(b.membranes + at));
    int64_t k = 0;
    for (; k + kWidth <= n; k += kWidth)
      ForwardSeries<Vector, kParts, F, kKeepMembranes>(s, b, &laid_out[k], L, at + k, state + k, stream_run);
    for (; k < n; ++k) ForwardSeries<F, 1, F, kKeepMembranes>(s, b, &laid_out[k], L, at + k, state + k, false);
  }
#if defined(__x86_64__)
  if (b.stream) _mm_sfence();  // the non-temporal stores are visible before the chunk counts as done
#endif
}

template <typename V, typename F>
GLIF_INLINE V Abs(const V& x) {
  return x < F(0) ? -x : x;
}

// The surrogate's derivative at x, for a block of elements or one; kSigmoid lane by lane (exp).
template <int kSurrogate, typename V, typename F>
GLIF_INLINE V SurrogateDerivative(const V& x, F width, F half_width, F inverse_width) {
  const V zero = V{};
  switch (kSurrogate) {
    case kRectangular:
      return Abs<V, F>(x) < half_width ? zero + inverse_width : zero;
    case kSigmoid: {
      F lanes[sizeof(V) / sizeof(F)];
      std::memcpy(lanes, &x, sizeof(V));
      for (F& lane : lanes) {
        const F up = F(1) / (F(1) + std::exp(-width * lane)), down = F(1) / (F(1) + std::exp(width * lane));
        lane = width * up * down;
      }
      return Load<V>(lanes);
    }
    case kArctan: {
      const V z = F(M_PI / 2) * width * x;
      return (width / F(2)) / (F(1) + z * z);
    }
    default: {  // kTriangle
      const V rise = F(1) - Abs<V, F>(x) / width;
      return (rise > zero ? rise : zero) / width;
    }
  }
}

template <typename F>
struct BackwardBuffers {
  const F *inputs, *membranes, *coefficients, *input_gain;
  const F *membrane0, *spike0;          // null: the state started from zeros (no gradient for it)
  const F *grad_spikes, *grad_membranes;  // each may be null (a zero cotangent)
  F *grad_inputs, *grad_coefficients, *grad_input_gain, *grad_membrane0, *grad_spike0;
  bool stream;  // grad_inputs go to memory with non-temporal stores, where a run is aligned (Layout)
};

struct BackwardOptions {
  int surrogate;
  double width;
};

// All T steps back through time of kParts * |V| elements from `at` (step 0's offset) and `state`,
// as ForwardSeries; adds their terms of the parameter sums into `sums` (at their position in rows
// of `run`: kCoefficients rows, then T rows of input-gain sums). delta is dL/du_t in total; step
// t + 1's use of (u_t, o_t) is accounted for at step t, so each step reads only u_t (and
// recomputes o_t from it).
template <typename V, int kParts, typename F, int kSurrogate>
GLIF_INLINE void BackwardSeries(const Layout& s, const BackwardBuffers<F>& b, F width, const F* coefficients,
                                int64_t run, int64_t at, int64_t state, F* sums, bool stream) {
  constexpr int64_t kWidth = sizeof(V) / sizeof(F);
  const int64_t M = s.elements();
  const F half_width = width / F(2), inverse_width = F(1) / width;
  const V zero = V{}, one = zero + F(1);
  V decay[kParts], reset_gate[kParts], soft_reset[kParts], threshold[kParts], next[kParts];
  V sum_decay[kParts], sum_reset_gate[kParts], sum_soft_reset[kParts], sum_threshold[kParts], sum_leak[kParts];
#pragma GCC unroll 4
  for (int i = 0; i < kParts; ++i) {
    const F* c = coefficients + i * kWidth;
    decay[i] = Load<V>(c + kDecay * run), reset_gate[i] = Load<V>(c + kResetGate * run);
    soft_reset[i] = Load<V>(c + kSoftReset * run), threshold[i] = Load<V>(c + kThreshold * run);
    next[i] = sum_decay[i] = sum_reset_gate[i] = sum_soft_reset[i] = sum_threshold[i] = sum_leak[i] = zero;
  }
  // part i's step t + 1's use of (u_t, o_t), with kept = 1 - reset_gate * o_t and next = dL/du_{t+1}:
  // adds its terms of the sums and returns dL/do_t through it
  const auto next_use = [&](int i, const V& u, const V& spike, const V& kept) {
    sum_decay[i] += next[i] * u * kept;
    sum_reset_gate[i] += next[i] * decay[i] * u * spike;
    sum_soft_reset[i] += next[i] * spike;
    return -next[i] * (decay[i] * reset_gate[i] * u + soft_reset[i]);
  };
  at += (s.time_steps - 1) * M;
  for (int64_t t = s.time_steps - 1; t >= 0; --t, at -= M) {
    if (sizeof(V) > sizeof(F)) {  // blocks: 3T input streams, more than the hardware prefetchers follow
      const int64_t ahead = at + kPrefetchBytes / int64_t(sizeof(F));
      __builtin_prefetch(b.membranes + ahead);
      __builtin_prefetch(b.inputs + ahead);
      if (b.grad_spikes) __builtin_prefetch(b.grad_spikes + ahead);
    }
#pragma GCC unroll 4
    for (int i = 0; i < kParts; ++i) {
      const int64_t element = at + i * kWidth;
      const V u = Load<V>(b.membranes + element), distance = u - threshold[i];
      const V spike = distance > zero ? one : zero, kept = F(1) - reset_gate[i] * spike;
      const V grad_spike_in = b.grad_spikes ? Load<V>(b.grad_spikes + element) : zero;
      const V grad_membrane_in = b.grad_membranes ? Load<V>(b.grad_membranes + element) : zero;
      const V grad_spike = next_use(i, u, spike, kept) + grad_spike_in;
      const V through_spike =
          grad_spike * SurrogateDerivative<kSurrogate, V, F>(distance, width, half_width, inverse_width);
      const V delta = next[i] * decay[i] * kept + grad_membrane_in + through_spike;
      sum_threshold[i] += through_spike;
      sum_leak[i] += delta;
      F* gain_sum = sums + (kCoefficients + t) * run + i * kWidth;
      Store<V>(gain_sum, Load<V>(gain_sum) + delta * Load<V>(b.inputs + element), false);
      const V gain = Load<V>(coefficients + (kCoefficients + t) * run + i * kWidth);
      Store<V>(b.grad_inputs + element, delta * gain, stream);
      next[i] = delta;
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < kParts; ++i) {
    const int64_t element = state + i * kWidth;
    if (b.membrane0) {  // the first step's use of the initial state
      const V u = Load<V>(b.membrane0 + element), spike = Load<V>(b.spike0 + element);
      const V kept = F(1) - reset_gate[i] * spike;
      Store<V>(b.grad_spike0 + element, next_use(i, u, spike, kept), false);
      Store<V>(b.grad_membrane0 + element, next[i] * decay[i] * kept, false);
    }
    const V terms[kCoefficients] = {sum_decay[i], sum_reset_gate[i], sum_leak[i], sum_soft_reset[i], sum_threshold[i]};
    for (int row = 0; row < kCoefficients; ++row) {
      F* sum = sums + row * run + i * kWidth;
      Store<V>(sum, Load<V>(sum) + terms[row], false);
    }
  }
}

// One chunk's backward; adds its per-channel sums into partial (double): [kCoefficients, C]
// coefficient sums, then [T, C] input-gain sums. Sums run in F over one tile, by position in the
// run, and are then folded to channels in double.
template <typename F, int kSurrogate, int kBytes>
GLIF_INLINE void BackwardChunk(const Layout& s, const BackwardBuffers<F>& b, const BackwardOptions& options,
                               int64_t problem, int64_t chunk, double* partial) {
  using Vector = typename BlockOf<F, kBytes>::type;
  constexpr int kParts = kLineBytes / kBytes;
  constexpr int64_t kWidth = kLineBytes / sizeof(F);
  const int64_t C = s.channels, M = s.elements(), T = s.time_steps, L = s.run_elements();
  const std::vector<F> laid_out = RunCoefficients<F>(s, b.coefficients + problem * kCoefficients * C,
                                                     b.input_gain + problem * T * C);
  const F width = F(options.width);
  std::vector<F> sums((kCoefficients + T) * L);
  for (int64_t tile = s.first_tile(chunk); tile < s.first_tile(chunk + 1); ++tile) {
    const int64_t row_begin = tile * s.tile_rows(), rows = std::min(s.tile_rows(), s.rows - row_begin);
    const int64_t begin = row_begin * C, count = rows * C;
    std::fill(sums.begin(), sums.end(), F(0));
    for (int64_t run_begin = begin; run_begin < begin + count; run_begin += L) {
      const int64_t n = std::min(L, begin + count - run_begin);
      const int64_t at = problem * T * M + run_begin, state = problem * M + run_begin;
      const bool stream_run = b.stream && Aligned16(b.grad_inputs + at);
      int64_t k = 0;
      for (; k + kWidth <= n; k += kWidth)
        BackwardSeries<Vector, kParts, F, kSurrogate>(s, b, width, &laid_out[k], L, at + k, state + k, &sums[k],
                                                      stream_run);
      for (; k < n; ++k)
        BackwardSeries<F, 1, F, kSurrogate>(s, b, width, &laid_out[k], L, at + k, state + k, &sums[k], false);
    }
    for (int64_t row = 0; row < kCoefficients + T; ++row)
      for (int64_t k = 0; k < L; k += C)
        for (int64_t c = 0; c < C; ++c) partial[row * C + c] += sums[row * L + k + c];
  }
#if defined(__x86_64__)
  if (b.stream) _mm_sfence();
#endif
}

// The entry points, one per x86 level (and dtype, surrogate), and the choice among them.
template <typename F>
using ForwardChunkFunction = void (*)(const Layout&, const ForwardBuffers<F>&, int64_t, int64_t);
template <typename F>
using BackwardChunkFunction = void (*)(const Layout&, const BackwardBuffers<F>&, const BackwardOptions&, int64_t,
                                       int64_t, double*);

template <typename F, bool kKeepMembranes>
GLIF_TARGET("arch=x86-64-v4")
void ForwardChunkAvx512(const Layout& s, const ForwardBuffers<F>& b, int64_t problem, int64_t chunk) {
  ForwardChunk<F, kKeepMembranes, 64>(s, b, problem, chunk);
}
template <typename F, bool kKeepMembranes>
GLIF_TARGET("arch=x86-64-v3")
void ForwardChunkAvx2(const Layout& s, const ForwardBuffers<F>& b, int64_t problem, int64_t chunk) {
  ForwardChunk<F, kKeepMembranes, 32>(s, b, problem, chunk);
}
template <typename F, bool kKeepMembranes>
void ForwardChunkBaseline(const Layout& s, const ForwardBuffers<F>& b, int64_t problem, int64_t chunk) {
  ForwardChunk<F, kKeepMembranes, 16>(s, b, problem, chunk);
}

template <typename F, bool kKeepMembranes>
ForwardChunkFunction<F> ForwardChunkAt(Isa isa) {
  return isa == kAvx512 ? ForwardChunkAvx512<F, kKeepMembranes>
         : isa == kAvx2 ? ForwardChunkAvx2<F, kKeepMembranes>
                        : ForwardChunkBaseline<F, kKeepMembranes>;
}

template <typename F, int kSurrogate>
GLIF_TARGET("arch=x86-64-v4")
void BackwardChunkAvx512(const Layout& s, const BackwardBuffers<F>& b, const BackwardOptions& o, int64_t problem,
                         int64_t chunk, double* partial) {
  BackwardChunk<F, kSurrogate, 64>(s, b, o, problem, chunk, partial);
}
template <typename F, int kSurrogate>
GLIF_TARGET("arch=x86-64-v3")
void BackwardChunkAvx2(const Layout& s, const BackwardBuffers<F>& b, const BackwardOptions& o, int64_t problem,
                       int64_t chunk, double* partial) {
  BackwardChunk<F, kSurrogate, 32>(s, b, o, problem, chunk, partial);
}
template <typename F, int kSurrogate>
void BackwardChunkBaseline(const Layout& s, const BackwardBuffers<F>& b, const BackwardOptions& o, int64_t problem,
                           int64_t chunk, double* partial) {
  BackwardChunk<F, kSurrogate, 16>(s, b, o, problem, chunk, partial);
}

template <typename F, int kSurrogate>
BackwardChunkFunction<F> BackwardChunkAt(Isa isa) {
  return isa == kAvx512 ? BackwardChunkAvx512<F, kSurrogate>
         : isa == kAvx2 ? BackwardChunkAvx2<F, kSurrogate>
                        : BackwardChunkBaseline<F, kSurrogate>;
}

template <typename F>
BackwardChunkFunction<F> BackwardChunkFor(int surrogate, Isa isa) {
  switch (surrogate) {
    case kRectangular: return BackwardChunkAt<F, kRectangular>(isa);
    case kSigmoid: return BackwardChunkAt<F, kSigmoid>(isa);
    case kArctan: return BackwardChunkAt<F, kArctan>(isa);
    default: return BackwardChunkAt<F, kTriangle>(isa);
  }
}

ffi::Error CheckDims(const char* name, ffi::AnyBuffer::Dimensions dims, std::initializer_list<int64_t> tail,
                     int64_t problems) {
  const int64_t rank = static_cast<int64_t>(dims.size()), tail_rank = static_cast<int64_t>(tail.size());
  bool ok = rank >= tail_rank;
  int64_t lead = 1;
  for (int64_t i = 0; ok && i < rank - tail_rank; ++i) lead *= dims[i];
  int64_t i = rank - tail_rank;
  for (int64_t size : tail) ok = ok && dims[i++] == size;
  if (ok && lead == problems) return ffi::Error::Success();
  return ffi::Error::InvalidArgument(std::string("glif_cpu: operand '") + name + "' has an unexpected shape");
}

ffi::ErrorOr<Layout> LayoutOf(const ffi::AnyBuffer& inputs, int64_t tile) {
  auto dims = inputs.dimensions();
  if (dims.size() < 3) return ffi::Unexpected(ffi::Error::InvalidArgument("glif_cpu: inputs must be [..., T, N, C]"));
  const int64_t rank = dims.size();
  Layout s{1, dims[rank - 3], dims[rank - 2], dims[rank - 1], tile};
  for (int64_t i = 0; i < rank - 3; ++i) s.problems *= dims[i];
  return s;
}

ffi::Error CheckTypes(std::initializer_list<const ffi::AnyBuffer*> buffers, ffi::DataType type) {
  if (type != ffi::DataType::F32 && type != ffi::DataType::F64)
    return ffi::Error::InvalidArgument("glif_cpu: only float32 and float64 are supported");
  for (const ffi::AnyBuffer* buffer : buffers)
    if (buffer->element_type() != type) return ffi::Error::InvalidArgument("glif_cpu: operands differ in dtype");
  return ffi::Error::Success();
}

#define GLIF_RETURN_IF_ERROR(expr)      \
  do {                                  \
    ffi::Error error_ = (expr);         \
    if (error_.failure()) return error_; \
  } while (0)

template <typename F>
void RunForward(ffi::ThreadPool& pool, const Layout& s, const ForwardBuffers<F>& b) {
  const int64_t chunks = s.chunks();
  const ForwardChunkFunction<F> chunk_function =
      b.membranes ? ForwardChunkAt<F, true>(ChosenIsa()) : ForwardChunkAt<F, false>(ChosenIsa());
  ParallelFor(pool, s.problems * chunks, [&](int64_t task) { chunk_function(s, b, task / chunks, task % chunks); });
}

ffi::Error Forward(ffi::ThreadPool pool, ffi::AnyBuffer inputs, ffi::AnyBuffer coefficients, ffi::AnyBuffer input_gain,
                   ffi::AnyBuffer membrane0, ffi::AnyBuffer spike0, ffi::Result<ffi::AnyBuffer> spikes,
                   ffi::Result<ffi::AnyBuffer> membranes, int32_t keep_membranes, int32_t zero_initial) {
  auto layout = LayoutOf(inputs, kRun);  // tiles of one run: only the unit of the chunks here
  if (layout.has_error()) return layout.error();
  const Layout s = layout.value();
  const ffi::DataType type = inputs.element_type();
  GLIF_RETURN_IF_ERROR(CheckTypes({&coefficients, &input_gain, &membrane0, &spike0, &*spikes, &*membranes}, type));
  GLIF_RETURN_IF_ERROR(CheckDims("coefficients", coefficients.dimensions(), {kCoefficients, s.channels}, s.problems));
  GLIF_RETURN_IF_ERROR(CheckDims("input_gain", input_gain.dimensions(), {s.time_steps, s.channels}, s.problems));
  if (!zero_initial) {
    GLIF_RETURN_IF_ERROR(CheckDims("membrane0", membrane0.dimensions(), {s.rows, s.channels}, s.problems));
    GLIF_RETURN_IF_ERROR(CheckDims("spike0", spike0.dimensions(), {s.rows, s.channels}, s.problems));
  }
  if (keep_membranes)
    GLIF_RETURN_IF_ERROR(
        CheckDims("membranes", membranes->dimensions(), {s.time_steps, s.rows, s.channels}, s.problems));
  auto run = [&](auto zero) {
    using F = decltype(zero);
    ForwardBuffers<F> b{inputs.typed_data<F>(),    coefficients.typed_data<F>(), input_gain.typed_data<F>(),
                        zero_initial ? nullptr : membrane0.typed_data<F>(),
                        zero_initial ? nullptr : spike0.typed_data<F>(),
                        spikes->typed_data<F>(),
                        keep_membranes ? membranes->typed_data<F>() : nullptr,
                        s.stream_outputs(sizeof(F))};
    RunForward<F>(pool, s, b);
  };
  if (type == ffi::DataType::F32)
    run(float{});
  else
    run(double{});
  return ffi::Error::Success();
}

template <typename F>
void RunBackward(ffi::ThreadPool& pool, const Layout& s, const BackwardBuffers<F>& b, const BackwardOptions& o) {
  const int64_t chunks = s.chunks(), C = s.channels, T = s.time_steps;
  const int64_t width = (kCoefficients + T) * C;  // one chunk's partial sums
  std::vector<double> partials(s.problems * chunks * width, 0.0);
  const BackwardChunkFunction<F> chunk_function = BackwardChunkFor<F>(o.surrogate, ChosenIsa());
  ParallelFor(pool, s.problems * chunks, [&](int64_t task) {
    chunk_function(s, b, o, task / chunks, task % chunks, &partials[task * width]);
  });
  // add the chunks in order (the same result for any number of threads); apply the signs
  // of the coefficients' terms in the recurrence
  const double sign[kCoefficients] = {1.0, -1.0, -1.0, -1.0, -1.0};  // decay, reset_gate, leak, soft_reset, threshold
  std::vector<double> total(width);
  for (int64_t problem = 0; problem < s.problems; ++problem) {
    std::fill(total.begin(), total.end(), 0.0);
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      const double* partial = &partials[(problem * chunks + chunk) * width];
      for (int64_t i = 0; i < width; ++i) total[i] += partial[i];
    }
    for (int64_t i = 0; i < kCoefficients * C; ++i)
      b.grad_coefficients[problem * kCoefficients * C + i] = F(sign[i / C] * total[i]);
    for (int64_t i = 0; i < T * C; ++i) b.grad_input_gain[problem * T * C + i] = F(total[kCoefficients * C + i]);
  }
}

// has_grad_spikes / has_grad_membranes: 0 for a zero cotangent (its operand is a placeholder).
ffi::Error Backward(ffi::ThreadPool pool, ffi::AnyBuffer inputs, ffi::AnyBuffer membranes, ffi::AnyBuffer coefficients,
                    ffi::AnyBuffer input_gain, ffi::AnyBuffer membrane0, ffi::AnyBuffer spike0,
                    ffi::AnyBuffer grad_spikes, ffi::AnyBuffer grad_membranes, ffi::Result<ffi::AnyBuffer> grad_inputs,
                    ffi::Result<ffi::AnyBuffer> grad_coefficients, ffi::Result<ffi::AnyBuffer> grad_input_gain,
                    ffi::Result<ffi::AnyBuffer> grad_membrane0, ffi::Result<ffi::AnyBuffer> grad_spike0,
                    int32_t surrogate, double width, int32_t has_grad_spikes, int32_t has_grad_membranes,
                    int32_t zero_initial) {
  auto layout = LayoutOf(inputs, kBackwardTile);
  if (layout.has_error()) return layout.error();
  const Layout s = layout.value();
  const ffi::DataType type = inputs.element_type();
  GLIF_RETURN_IF_ERROR(CheckTypes({&membranes, &coefficients, &input_gain, &membrane0, &spike0, &grad_spikes,
                                   &grad_membranes, &*grad_inputs, &*grad_coefficients, &*grad_input_gain,
                                   &*grad_membrane0, &*grad_spike0},
                                  type));
  const std::initializer_list<int64_t> series = {s.time_steps, s.rows, s.channels}, state = {s.rows, s.channels};
  GLIF_RETURN_IF_ERROR(CheckDims("membranes", membranes.dimensions(), series, s.problems));
  GLIF_RETURN_IF_ERROR(CheckDims("coefficients", coefficients.dimensions(), {kCoefficients, s.channels}, s.problems));
  GLIF_RETURN_IF_ERROR(CheckDims("input_gain", input_gain.dimensions(), {s.time_steps, s.channels}, s.problems));
  if (!zero_initial) {
    GLIF_RETURN_IF_ERROR(CheckDims("membrane0", membrane0.dimensions(), state, s.problems));
    GLIF_RETURN_IF_ERROR(CheckDims("spike0", spike0.dimensions(), state, s.problems));
    GLIF_RETURN_IF_ERROR(CheckDims("grad_membrane0", grad_membrane0->dimensions(), state, s.problems));
    GLIF_RETURN_IF_ERROR(CheckDims("grad_spike0", grad_spike0->dimensions(), state, s.problems));
  }
  if (has_grad_spikes) GLIF_RETURN_IF_ERROR(CheckDims("grad_spikes", grad_spikes.dimensions(), series, s.problems));
  if (has_grad_membranes)
    GLIF_RETURN_IF_ERROR(CheckDims("grad_membranes", grad_membranes.dimensions(), series, s.problems));
  if (surrogate < kRectangular || surrogate > kTriangle || !(width > 0))
    return ffi::Error::InvalidArgument("glif_cpu: unknown surrogate or non-positive width");
  auto run = [&](auto zero) {
    using F = decltype(zero);
    BackwardBuffers<F> b{inputs.typed_data<F>(),
                         membranes.typed_data<F>(),
                         coefficients.typed_data<F>(),
                         input_gain.typed_data<F>(),
                         zero_initial ? nullptr : membrane0.typed_data<F>(),
                         zero_initial ? nullptr : spike0.typed_data<F>(),
                         has_grad_spikes ? grad_spikes.typed_data<F>() : nullptr,
                         has_grad_membranes ? grad_membranes.typed_data<F>() : nullptr,
                         grad_inputs->typed_data<F>(),
                         grad_coefficients->typed_data<F>(),
                         grad_input_gain->typed_data<F>(),
                         grad_membrane0->typed_data<F>(),
                         grad_spike0->typed_data<F>(),
                         s.stream_outputs(sizeof(F))};
    RunBackward<F>(pool, s, b, BackwardOptions{surrogate, width});
  };
  if (type == ffi::DataType::F32)
    run(float{});
  else
    run(double{});
  return ffi::Error::Success();
}

}  // namespace

// The two symbols glif_jax.cpu_kernel registers (everything else stays hidden).
#define GLIF_EXPORT extern "C" __attribute__((visibility("default")))
GLIF_EXPORT XLA_FFI_Error* GlifForward(XLA_FFI_CallFrame* call_frame);
GLIF_EXPORT XLA_FFI_Error* GlifBackward(XLA_FFI_CallFrame* call_frame);
// The x86 level the loops run at: 0 baseline, 1 AVX2, 2 AVX-512 (see ChosenIsa).
GLIF_EXPORT int GlifIsa() { return ChosenIsa(); }

XLA_FFI_DEFINE_HANDLER_SYMBOL(GlifForward, Forward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()  // inputs
                                  .Arg<ffi::AnyBuffer>()  // coefficients
                                  .Arg<ffi::AnyBuffer>()  // input_gain
                                  .Arg<ffi::AnyBuffer>()  // membrane0
                                  .Arg<ffi::AnyBuffer>()  // spike0
                                  .Ret<ffi::AnyBuffer>()  // spikes
                                  .Ret<ffi::AnyBuffer>()  // membranes (or a placeholder)
                                  .Attr<int32_t>("keep_membranes")
                                  .Attr<int32_t>("zero_initial"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(GlifBackward, Backward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()  // inputs
                                  .Arg<ffi::AnyBuffer>()  // membranes
                                  .Arg<ffi::AnyBuffer>()  // coefficients
                                  .Arg<ffi::AnyBuffer>()  // input_gain
                                  .Arg<ffi::AnyBuffer>()  // membrane0
                                  .Arg<ffi::AnyBuffer>()  // spike0
                                  .Arg<ffi::AnyBuffer>()  // grad_spikes (or a placeholder)
                                  .Arg<ffi::AnyBuffer>()  // grad_membranes (or a placeholder)
                                  .Ret<ffi::AnyBuffer>()  // grad_inputs
                                  .Ret<ffi::AnyBuffer>()  // grad_coefficients
                                  .Ret<ffi::AnyBuffer>()  // grad_input_gain
                                  .Ret<ffi::AnyBuffer>()  // grad_membrane0
                                  .Ret<ffi::AnyBuffer>()  // grad_spike0
                                  .Attr<int32_t>("surrogate")
                                  .Attr<double>("width")
                                  .Attr<int32_t>("has_grad_spikes")
                                  .Attr<int32_t>("has_grad_membranes")
                                  .Attr<int32_t>("zero_initial"));
