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
// Here the forward runs the steps of a block of elements with the state in registers, reading
// the inputs and writing the spikes at T strides (one pass over memory, like a copy), 16 steps
// at a time over a tile of blocks, and the backward runs the steps back over a block the same way.
//
// Shapes (leading batch dims [G...] appear under jax.vmap and are looped over):
//   inputs, spikes, membranes, grad_*  [G..., T, N, C]   (N = everything between time and channels)
//   coefficients                       [G..., 5, C]      decay, reset_gate, leak, soft_reset, threshold
//   input_gain                         [G..., T, C] or [G..., T, 1] (one gain per step)
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
#include <type_traits>
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
// Series run in segments of kSegmentSteps steps: one segment of every series of a tile, then the
// next (ForEachRun). A whole long series at once would read and write lines of T pages a time
// step apart, more than the TLB and the prefetchers follow (measured here at T = 500, batch 16,
// 4096 channels: forward+backward 1.6-2.2x slower; segments of 8 to 16 steps alike, 32 slower).
constexpr int64_t kSegmentSteps = 16;
// Slabs (see Layout) begin at multiples of kSlabAlign elements: whole cache lines. (Slabs of at
// least 1024 elements, fewer tasks, measured 1.4-1.7x slower here than slabs of one run.)
constexpr int64_t kSlabAlign = 16;
// Backward tiles hold at least kFoldSteps element-steps per position of their slab (rows x T),
// so that folding a tile's sums into the double partials (5 + T per position) stays a small
// part of the work (one row per tile at T = 4, C = 65536 made forward+backward 2.8-4x slower).
constexpr int64_t kFoldSteps = 64;
// At most this many bytes of the backward's per-channel partial sums (row groups x [5 + T, C]
// doubles for a per-element input gain): with long sequences, fewer row groups (still
// kMaxChunks tasks, in slabs) instead of a partial sum the size of the inputs per group.
constexpr int64_t kPartialBytes = int64_t(16) << 20;

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

// Where a problem's work goes. Rows are walked in "runs" of about kRun elements (whole rows) whose
// coefficients lie side by side. A row of at least kRun channels is a run of its own, and its
// channels are then also cut into "slabs" of whole lines: one slab's coefficients, input gains
// and parameter sums stay in the caches while the slab's rows pass, and a problem of few rows
// (a Linear layer's [T, B, C], C large) still splits into enough parallel tasks. A chunk is one
// slab of one group of consecutive rows; chunks are the parallel tasks, and the backward's
// per-channel partial sums are kept per row group (the slabs of a group write disjoint columns),
// added in group order (deterministic).
struct Layout {
  int64_t problems, time_steps, rows, channels;  // G, T, N, C
  int64_t gain_channels;                          // input_gain [T, gain_channels]: 1 (per step) or C
  int64_t tile;                                   // elements per tile, about (at least one run)
  bool gain_sums;                                 // the backward sums the per-element input gain's gradient
  bool fold;                                      // the backward: tiles of at least kFoldSteps per position
  int64_t elements() const { return rows * channels; }  // per step
  bool gain_per_element() const { return gain_channels != 1; }
  int64_t run_rows() const { return std::max<int64_t>(1, kRun / std::max<int64_t>(1, channels)); }
  int64_t run_elements() const { return run_rows() * channels; }
  int64_t target_chunks() const {
    return std::max<int64_t>(1, std::min(kMaxChunks, time_steps * elements() / kChunkWork));
  }
  int64_t slabs() const {
    return run_rows() > 1 ? 1 : std::max<int64_t>(1, std::min(target_chunks(), channels / kRun));
  }
  // slab k covers run positions [slab_begin(k), slab_begin(k + 1)), whole lines but the last
  int64_t slab_begin(int64_t slab) const {
    if (slab >= slabs()) return run_elements();
    return slab * channels / slabs() / kSlabAlign * kSlabAlign;
  }
  int64_t slab_width() const { return (run_elements() + slabs() - 1) / slabs(); }  // about
  // a tile is whole runs of one slab (but the last tile of a problem may end in a shorter run)
  int64_t tile_rows() const {
    const int64_t fold_runs = fold ? (kFoldSteps + time_steps * run_rows() - 1) / (time_steps * run_rows()) : 1;
    return run_rows() * std::max<int64_t>({1, tile / slab_width(), fold_runs});
  }
  int64_t tiles() const { return (rows + tile_rows() - 1) / tile_rows(); }
  int64_t row_groups() const {
    const int64_t sums = (kCoefficients + (gain_per_element() && gain_sums ? time_steps : 0)) * channels;
    const int64_t memory = std::max<int64_t>(1, kPartialBytes / int64_t(sizeof(double)) / sums);
    return std::max<int64_t>(1, std::min({tiles(), target_chunks() / slabs(), memory}));
  }
  int64_t chunks() const { return slabs() * row_groups(); }
  // tiles [first_tile(g), first_tile(g + 1)) make row group g
  int64_t first_tile(int64_t group) const { return group * tiles() / row_groups(); }
  // outputs of `bytes`-sized elements go to memory with non-temporal stores: large enough, and
  // every step of a run starts 16-byte aligned where its first step does
  bool stream_outputs(int64_t bytes) const {
    return time_steps * elements() * bytes >= kStreamBytes && (elements() * bytes) % 16 == 0;
  }
};

// Where one chunk finds its coefficients: rows of `stride` values, position k of the run at k
// (kCoefficients rows, then one per step of the input gain when it is per element; a per-step
// gain is read at gain[t], one value). Rows of at least one run are read where they are; shorter
// ones are laid out for a run (the C values repeated run_rows() times), per chunk.
template <typename F>
struct RunCoefficients {
  RunCoefficients(const Layout& s, const F* coefficients, const F* input_gain) {
    const int64_t C = s.channels, L = s.run_elements(), T = s.time_steps;
    if (s.run_rows() == 1) {
      values = coefficients, gain = input_gain, stride = C;
      return;
    }
    const int64_t gain_rows = s.gain_per_element() ? T : 0;
    laid_out.resize((kCoefficients + gain_rows) * L);
    for (int64_t row = 0; row < kCoefficients + gain_rows; ++row) {
      const F* from = row < kCoefficients ? coefficients + row * C : input_gain + (row - kCoefficients) * C;
      for (int64_t k = 0; k < L; k += C) std::copy(from, from + C, &laid_out[row * L + k]);
    }
    values = laid_out.data(), stride = L;
    gain = s.gain_per_element() ? laid_out.data() + kCoefficients * L : input_gain;
  }
  const F *values, *gain;
  int64_t stride;
  std::vector<F> laid_out;
};

// The time steps [begin, end) of one segment of a series
struct Steps {
  int64_t begin, end;
};

// What passes from one segment of a series to the next (the forward: membrane, then spike; the
// backward: dL/du), at `at` and `stride` further on; + k: k elements further on.
template <typename F>
struct Carried {
  F* at;
  int64_t stride;
  Carried operator+(int64_t k) const { return {at + k, stride}; }
};

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

// step t's input gain for the elements at `gain` (per element) or gain[t * stride] for all
template <typename V, bool kGainPerElement, typename F>
GLIF_INLINE V GainAt(const F* gain, int64_t t, int64_t stride) {
  if (kGainPerElement) return Load<V>(gain + t * stride);
  return V{} + gain[t * stride];
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

// The steps of one segment (`steps`; all T where T <= kSegmentSteps) of kParts * |V| elements
// from `at` (step 0's offset) and `state` (in membrane0 / spike0), the state before the segment
// in `carried`: V is a vector register of elements (BlockOf) or a single element (F), kParts of
// them in registers side by side. `c` points at their coefficients (RunCoefficients: rows of c.stride),
// `k` is their position in the run. A zero initial state enters the same formula as zeros
// (exactly gain * x - leak).
template <typename V, int kParts, typename F, bool kKeepMembranes, bool kGainPerElement>
GLIF_INLINE void ForwardSeries(const Layout& s, const ForwardBuffers<F>& b, const RunCoefficients<F>& c, int64_t k,
                               int64_t at, int64_t state, Steps steps, const Carried<F>& carried, bool stream) {
  constexpr int64_t kWidth = sizeof(V) / sizeof(F);
  const int64_t M = s.elements(), run = c.stride;
  const F* gain = kGainPerElement ? c.gain + k : c.gain;
  const int64_t gain_stride = kGainPerElement ? run : 1;
  const V zero = V{}, one = zero + F(1);
  V decay[kParts], reset_gate[kParts], leak[kParts], soft_reset[kParts], threshold[kParts], membrane[kParts],
      spike[kParts];
#pragma GCC unroll 4
  for (int i = 0; i < kParts; ++i) {
    const F* coefficient = c.values + k + i * kWidth;
    decay[i] = Load<V>(coefficient + kDecay * run), reset_gate[i] = Load<V>(coefficient + kResetGate * run);
    leak[i] = Load<V>(coefficient + kLeak * run), soft_reset[i] = Load<V>(coefficient + kSoftReset * run);
    threshold[i] = Load<V>(coefficient + kThreshold * run);
    if (steps.begin > 0) {
      membrane[i] = Load<V>(carried.at + i * kWidth), spike[i] = Load<V>(carried.at + carried.stride + i * kWidth);
    } else {
      membrane[i] = b.membrane0 ? Load<V>(b.membrane0 + state + i * kWidth) : zero;
      spike[i] = b.spike0 ? Load<V>(b.spike0 + state + i * kWidth) : zero;
    }
  }
  at += steps.begin * M;
  for (int64_t t = steps.begin; t < steps.end; ++t, at += M) {
#pragma GCC unroll 4
    for (int i = 0; i < kParts; ++i) {
      const int64_t element = at + i * kWidth;
      const V gain_t = GainAt<V, kGainPerElement>(gain + (kGainPerElement ? i * kWidth : 0), t, gain_stride);
      const V x = Load<V>(b.inputs + element);
      membrane[i] = decay[i] * membrane[i] * (F(1) - reset_gate[i] * spike[i]) - leak[i] + gain_t * x -
                    soft_reset[i] * spike[i];
      spike[i] = membrane[i] > threshold[i] ? one : zero;
      Store<V>(b.spikes + element, spike[i], stream);
      if (kKeepMembranes) Store<V>(b.membranes + element, membrane[i], stream);
    }
  }
  if (steps.end < s.time_steps) {
#pragma GCC unroll 4
    for (int i = 0; i < kParts; ++i) {
      Store<V>(carried.at + i * kWidth, membrane[i], false);
      Store<V>(carried.at + carried.stride + i * kWidth, spike[i], false);
    }
  }
}

// Runs series(k, end, at, state, steps, carried) for every run of a chunk's slab and every
// segment of kSegmentSteps steps (in order, or from the last one back with `reverse`), the
// segments of all the runs of a tile before the next segment; calls tile_done(begin, end) after
// each tile. k is the position in the run of the slab's first element, [k, end) the slab's part
// of a run whose first element is at `at` (step 0) and `state`; `carried` the slab's place (for
// position k) in a buffer of what passes from one segment to the next, `kCarried` rows of the
// tile's elements.
template <int kCarried, typename F, typename Series, typename TileDone>
GLIF_INLINE void ForEachRun(const Layout& s, int64_t problem, int64_t chunk, bool reverse, const Series& series,
                            const TileDone& tile_done) {
  const int64_t C = s.channels, M = s.elements(), T = s.time_steps, L = s.run_elements();
  const int64_t slab = chunk % s.slabs(), group = chunk / s.slabs();
  const int64_t slab_begin = s.slab_begin(slab), slab_end = s.slab_begin(slab + 1), W = slab_end - slab_begin;
  const int64_t segments = (T + kSegmentSteps - 1) / kSegmentSteps, runs = s.tile_rows() / s.run_rows();
  std::vector<F> carried(segments > 1 ? kCarried * runs * W : 0);
  for (int64_t tile = s.first_tile(group); tile < s.first_tile(group + 1); ++tile) {
    const int64_t row_begin = tile * s.tile_rows(), row_end = std::min(row_begin + s.tile_rows(), s.rows);
    for (int64_t j = 0; j < segments; ++j) {
      const int64_t segment = reverse ? segments - 1 - j : j;
      const Steps steps{segment * kSegmentSteps, std::min(T, (segment + 1) * kSegmentSteps)};
      for (int64_t run_begin = row_begin * C, local = 0; run_begin < row_end * C; run_begin += L, local += W) {
        const int64_t n = std::min(L, row_end * C - run_begin);
        series(slab_begin, std::min(n, slab_end), problem * T * M + run_begin, problem * M + run_begin, steps,
               Carried<F>{carried.data() + local, runs * W});
      }
    }
    tile_done(slab_begin, slab_end);
  }
}

template <typename F, bool kKeepMembranes, int kBytes, bool kGainPerElement>
GLIF_INLINE void ForwardChunk(const Layout& s, const ForwardBuffers<F>& b, int64_t problem, int64_t chunk) {
  using Vector = typename BlockOf<F, kBytes>::type;
  constexpr int kParts = kLineBytes / kBytes;
  constexpr int64_t kWidth = kLineBytes / sizeof(F);
  const int64_t C = s.channels, T = s.time_steps;
  const RunCoefficients<F> c(s, b.coefficients + problem * kCoefficients * C,
                             b.input_gain + problem * T * s.gain_channels);
  ForEachRun<2, F>(
      s, problem, chunk, false,
      [&](int64_t k, int64_t end, int64_t at, int64_t state, Steps steps, Carried<F> carried) {
        const bool stream_run = b.stream && Aligned16(b.spikes + at + k) &&
                                (!kKeepMembranes || Aligned16(b.membranes + at + k));
        const int64_t first = k;
        for (; k + kWidth <= end; k += kWidth)
          ForwardSeries<Vector, kParts, F, kKeepMembranes, kGainPerElement>(s, b, c, k, at + k, state + k, steps,
                                                                            carried + (k - first), stream_run);
        for (; k < end; ++k)
          ForwardSeries<F, 1, F, kKeepMembranes, kGainPerElement>(s, b, c, k, at + k, state + k, steps,
                                                                  carried + (k - first), false);
      },
      [](int64_t, int64_t) {});
#if defined(__x86_64__)
  if (b.stream) _mm_sfence();  // the non-temporal stores are visible before the chunk counts as done
#endif
}

template <typename V, typename F>
GLIF_INLINE V Abs(const V& x) {
  return x < F(0) ? -x : x;
}

// exp(x) for x <= 0, a block of elements at once (one element: std::exp): x = n ln 2 + r with
// |r| <= ln(2) / 2, exp(r) by its Taylor series to the dtype's precision (degree 7 for float32,
// 13 for float64: a few units in the last place), times 2^n from the exponent bits. Arguments
// below the smallest normal result give that result (the surrogate is then 0 to the dtype's
// precision anyway).
template <typename V, typename F>
GLIF_INLINE V ExpNonPositive(V x) {
  if constexpr (sizeof(V) == sizeof(F)) {
    return std::exp(x);
  } else {
    constexpr bool kSingle = sizeof(F) == 4;
    using Int = std::conditional_t<kSingle, int32_t, int64_t>;
    typedef Int IntV __attribute__((vector_size(sizeof(V))));
    const F lowest = kSingle ? F(-87.0) : F(-708.0);
    x = x < lowest ? V{} + lowest : x;
    const V n = __builtin_convertvector(__builtin_convertvector(x * F(M_LOG2E) - F(0.5), IntV), V);  // round
    const V r = (x - n * F(0.693145751953125)) - n * F(1.428606820309417232e-06);  // ln 2 in two parts
    constexpr int kDegree = kSingle ? 7 : 13;
    V p = V{} + F(1);
#pragma GCC unroll 16
    for (int d = kDegree; d >= 1; --d) p = F(1) + p * r * (F(1) / F(d));  // 1 + r (1 + r/2 (1 + r/3 (...)))
    const IntV bits = (__builtin_convertvector(n, IntV) + Int(kSingle ? 127 : 1023)) << (kSingle ? 23 : 52);
    V scale;
    std::memcpy(&scale, &bits, sizeof(V));
    return p * scale;
  }
}

// The surrogate's derivative at x, for a block of elements or one.
template <int kSurrogate, typename V, typename F>
GLIF_INLINE V SurrogateDerivative(const V& x, F width, F half_width, F inverse_width) {
  const V zero = V{};
  switch (kSurrogate) {
    case kRectangular:
      return Abs<V, F>(x) < half_width ? zero + inverse_width : zero;
    case kSigmoid: {  // k s(kx) s(-kx) = k e / (1 + e)^2 with e = exp(-k|x|) (symmetric; no overflow)
      const V e = ExpNonPositive<V, F>(-width * Abs<V, F>(x)), sum = F(1) + e;
      return width * e / (sum * sum);
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
  const F *inputs, *membranes, *coefficients, *input_gain;  // inputs null: no input-gain gradient
  const F *membrane0, *spike0;          // null: the state started from zeros (no gradient for it)
  const F *grad_spikes, *grad_membranes;  // each may be null (a zero cotangent)
  F *grad_inputs, *grad_coefficients, *grad_input_gain, *grad_membrane0, *grad_spike0;
  bool stream;  // grad_inputs go to memory with non-temporal stores, where a run is aligned (Layout)
};

struct BackwardOptions {
  int surrogate;
  double width;
};

// Where a series adds its parameter terms: kCoefficients rows of `stride`, at the series' own
// position, then the input gain's: T rows at `gain` (per element: rows of `stride` at the
// series' position; per step: rows of one line, `gain_stride`, shared by all the series of a
// tile, whose lanes are added up at the end).
template <typename F>
struct Sums {
  F* coefficients;
  int64_t stride;
  F* gain;  // null: no input-gain gradient
  int64_t gain_stride;
};

// The steps of one segment back through time of kParts * |V| elements from `at` (step 0's
// offset) and `state`, dL/du after the segment in `carried`, as ForwardSeries; adds their terms
// of the parameter sums into `sums`. delta is dL/du_t in total; step t + 1's use of (u_t, o_t)
// is accounted for at step t, so each step reads only u_t (and recomputes o_t from it).
template <typename V, int kParts, typename F, int kSurrogate, bool kGainPerElement>
GLIF_INLINE void BackwardSeries(const Layout& s, const BackwardBuffers<F>& b, F width, const RunCoefficients<F>& c,
                                int64_t k, int64_t at, int64_t state, Steps steps, const Carried<F>& carried,
                                const Sums<F>& sums, bool stream) {
  constexpr int64_t kWidth = sizeof(V) / sizeof(F);
  const int64_t M = s.elements(), run = c.stride;
  const F* gain = kGainPerElement ? c.gain + k : c.gain;
  const int64_t gain_stride = kGainPerElement ? run : 1;
  const F half_width = width / F(2), inverse_width = F(1) / width;
  const V zero = V{}, one = zero + F(1);
  V decay[kParts], reset_gate[kParts], soft_reset[kParts], threshold[kParts], next[kParts];
  V sum_decay[kParts], sum_reset_gate[kParts], sum_soft_reset[kParts], sum_threshold[kParts], sum_leak[kParts];
#pragma GCC unroll 4
  for (int i = 0; i < kParts; ++i) {
    const F* coefficient = c.values + k + i * kWidth;
    decay[i] = Load<V>(coefficient + kDecay * run), reset_gate[i] = Load<V>(coefficient + kResetGate * run);
    soft_reset[i] = Load<V>(coefficient + kSoftReset * run), threshold[i] = Load<V>(coefficient + kThreshold * run);
    sum_decay[i] = sum_reset_gate[i] = sum_soft_reset[i] = sum_threshold[i] = sum_leak[i] = zero;
    next[i] = steps.end < s.time_steps ? Load<V>(carried.at + i * kWidth) : zero;
  }
  // part i's step t + 1's use of (u_t, o_t), with kept = 1 - reset_gate * o_t and next = dL/du_{t+1}:
  // adds its terms of the sums and returns dL/do_t through it
  const auto next_use = [&](int i, const V& u, const V& spike, const V& kept) {
    sum_decay[i] += next[i] * u * kept;
    sum_reset_gate[i] += next[i] * decay[i] * u * spike;
    sum_soft_reset[i] += next[i] * spike;
    return -next[i] * (decay[i] * reset_gate[i] * u + soft_reset[i]);
  };
  at += (steps.end - 1) * M;
  for (int64_t t = steps.end - 1; t >= steps.begin; --t, at -= M) {
    if (sizeof(V) > sizeof(F)) {  // blocks: 3T input streams, more than the hardware prefetchers follow
      const int64_t ahead = at + kPrefetchBytes / int64_t(sizeof(F));
      __builtin_prefetch(b.membranes + ahead);
      if (sums.gain) __builtin_prefetch(b.inputs + ahead);
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
      if (sums.gain) {
        F* gain_sum = sums.gain + t * sums.gain_stride + i * kWidth;
        Store<V>(gain_sum, Load<V>(gain_sum) + delta * Load<V>(b.inputs + element), false);
      }
      const V gain_t = GainAt<V, kGainPerElement>(gain + (kGainPerElement ? i * kWidth : 0), t, gain_stride);
      Store<V>(b.grad_inputs + element, delta * gain_t, stream);
      next[i] = delta;
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < kParts; ++i) {
    const int64_t element = state + i * kWidth;
    if (steps.begin > 0) Store<V>(carried.at + i * kWidth, next[i], false);
    if (steps.begin == 0 && b.membrane0) {  // the first step's use of the initial state
      const V u = Load<V>(b.membrane0 + element), spike = Load<V>(b.spike0 + element);
      const V kept = F(1) - reset_gate[i] * spike;
      Store<V>(b.grad_spike0 + element, next_use(i, u, spike, kept), false);
      Store<V>(b.grad_membrane0 + element, next[i] * decay[i] * kept, false);
    }
    const V terms[kCoefficients] = {sum_decay[i], sum_reset_gate[i], sum_leak[i], sum_soft_reset[i], sum_threshold[i]};
    for (int row = 0; row < kCoefficients; ++row) {
      F* sum = sums.coefficients + row * sums.stride + i * kWidth;
      Store<V>(sum, Load<V>(sum) + terms[row], false);
    }
  }
}

// One chunk's backward; adds its per-channel sums into `partial` (double, its row group's): the
// [kCoefficients, C] coefficient sums, then (per-element input gain) [T, C] input-gain sums; a
// per-step gain's [T] sums go to `step_partial` (the chunk's own). Sums run in F over one tile,
// by position in the slab, and are then folded to channels in double.
template <typename F, int kSurrogate, int kBytes, bool kGainPerElement>
GLIF_INLINE void BackwardChunk(const Layout& s, const BackwardBuffers<F>& b, const BackwardOptions& options,
                               int64_t problem, int64_t chunk, double* partial, double* step_partial) {
  using Vector = typename BlockOf<F, kBytes>::type;
  constexpr int kParts = kLineBytes / kBytes;
  constexpr int64_t kWidth = kLineBytes / sizeof(F);
  const int64_t C = s.channels, T = s.time_steps;
  const RunCoefficients<F> c(s, b.coefficients + problem * kCoefficients * C,
                             b.input_gain + problem * T * s.gain_channels);
  const F width = F(options.width);
  const bool gain_sums = b.inputs != nullptr;
  const int64_t slab_begin = s.slab_begin(chunk % s.slabs());
  const int64_t W = s.slab_begin(chunk % s.slabs() + 1) - slab_begin;
  const int64_t sum_rows = kCoefficients + (kGainPerElement && gain_sums ? T : 0);
  std::vector<F> sums(sum_rows * W), step_sums(!kGainPerElement && gain_sums ? T * kWidth : 0);
  ForEachRun<1, F>(
      s, problem, chunk, true,
      [&](int64_t k, int64_t end, int64_t at, int64_t state, Steps steps, Carried<F> carried) {
        const bool stream_run = b.stream && Aligned16(b.grad_inputs + at + k);
        const int64_t first = k;
        const auto sums_at = [&](int64_t k) {
          F* coefficients = &sums[k - slab_begin];
          F* gain = !gain_sums ? nullptr : kGainPerElement ? coefficients + kCoefficients * W : step_sums.data();
          return Sums<F>{coefficients, W, gain, kGainPerElement ? W : kWidth};
        };
        for (; k + kWidth <= end; k += kWidth)
          BackwardSeries<Vector, kParts, F, kSurrogate, kGainPerElement>(
              s, b, width, c, k, at + k, state + k, steps, carried + (k - first), sums_at(k), stream_run);
        for (; k < end; ++k)
          BackwardSeries<F, 1, F, kSurrogate, kGainPerElement>(s, b, width, c, k, at + k, state + k, steps,
                                                               carried + (k - first), sums_at(k), false);
      },
      [&](int64_t begin, int64_t end) {
        // a slab's positions are its channels; a laid-out run (begin 0) repeats the C channels
        const int64_t repeat = s.run_rows() > 1 ? C : W;
        for (int64_t row = 0; row < sum_rows; ++row) {
          double* to = partial + row * C + begin;
          const F* from = &sums[row * W];
          for (int64_t k = 0; k < W; k += repeat)
            for (int64_t c = 0; c < std::min(repeat, W - k); ++c) to[c] += from[k + c];
        }
        std::fill(sums.begin(), sums.end(), F(0));
        for (int64_t t = 0; t < int64_t(step_sums.size()) / kWidth; ++t)
          for (int64_t lane = 0; lane < kWidth; ++lane) step_partial[t] += step_sums[t * kWidth + lane];
        std::fill(step_sums.begin(), step_sums.end(), F(0));
      });
#if defined(__x86_64__)
  if (b.stream) _mm_sfence();
#endif
}
// The entry points, one per x86 level (and dtype, surrogate, kind of input gain), and the choice among them.
template <typename F>
using ForwardChunkFunction = void (*)(const Layout&, const ForwardBuffers<F>&, int64_t, int64_t);
template <typename F>
using BackwardChunkFunction = void (*)(const Layout&, const BackwardBuffers<F>&, const BackwardOptions&, int64_t,
                                       int64_t, double*, double*);

#define GLIF_FORWARD_AT(name, arch, bytes)                                                                  \
  template <typename F, bool kKeepMembranes, bool kGainPerElement>                                          \
  GLIF_TARGET(arch)                                                                                         \
  void name(const Layout& s, const ForwardBuffers<F>& b, int64_t problem, int64_t chunk) {                  \
    ForwardChunk<F, kKeepMembranes, bytes, kGainPerElement>(s, b, problem, chunk);                          \
  }
#define GLIF_BACKWARD_AT(name, arch, bytes)                                                                 \
  template <typename F, int kSurrogate, bool kGainPerElement>                                               \
  GLIF_TARGET(arch)                                                                                         \
  void name(const Layout& s, const BackwardBuffers<F>& b, const BackwardOptions& o, int64_t problem,         \
            int64_t chunk, double* partial, double* step_partial) {                                         \
    BackwardChunk<F, kSurrogate, bytes, kGainPerElement>(s, b, o, problem, chunk, partial, step_partial);   \
  }
GLIF_FORWARD_AT(ForwardChunkAvx512, "arch=x86-64-v4", 64)
GLIF_FORWARD_AT(ForwardChunkAvx2, "arch=x86-64-v3", 32)
GLIF_BACKWARD_AT(BackwardChunkAvx512, "arch=x86-64-v4", 64)
GLIF_BACKWARD_AT(BackwardChunkAvx2, "arch=x86-64-v3", 32)
template <typename F, bool kKeepMembranes, bool kGainPerElement>
void ForwardChunkBaseline(const Layout& s, const ForwardBuffers<F>& b, int64_t problem, int64_t chunk) {
  ForwardChunk<F, kKeepMembranes, 16, kGainPerElement>(s, b, problem, chunk);
}
template <typename F, int kSurrogate, bool kGainPerElement>
void BackwardChunkBaseline(const Layout& s, const BackwardBuffers<F>& b, const BackwardOptions& o, int64_t problem,
                           int64_t chunk, double* partial, double* step_partial) {
  BackwardChunk<F, kSurrogate, 16, kGainPerElement>(s, b, o, problem, chunk, partial, step_partial);
}

template <typename F, bool kKeepMembranes, bool kGainPerElement>
ForwardChunkFunction<F> ForwardChunkAt(Isa isa) {
  return isa == kAvx512 ? ForwardChunkAvx512<F, kKeepMembranes, kGainPerElement>
         : isa == kAvx2 ? ForwardChunkAvx2<F, kKeepMembranes, kGainPerElement>
                        : ForwardChunkBaseline<F, kKeepMembranes, kGainPerElement>;
}

template <typename F>
ForwardChunkFunction<F> ForwardChunkFor(bool keep_membranes, bool gain_per_element, Isa isa) {
  if (keep_membranes)
    return gain_per_element ? ForwardChunkAt<F, true, true>(isa) : ForwardChunkAt<F, true, false>(isa);
  return gain_per_element ? ForwardChunkAt<F, false, true>(isa) : ForwardChunkAt<F, false, false>(isa);
}

template <typename F, int kSurrogate, bool kGainPerElement>
BackwardChunkFunction<F> BackwardChunkAt(Isa isa) {
  return isa == kAvx512 ? BackwardChunkAvx512<F, kSurrogate, kGainPerElement>
         : isa == kAvx2 ? BackwardChunkAvx2<F, kSurrogate, kGainPerElement>
                        : BackwardChunkBaseline<F, kSurrogate, kGainPerElement>;
}

template <typename F, bool kGainPerElement>
BackwardChunkFunction<F> BackwardChunkFor(int surrogate, Isa isa) {
  switch (surrogate) {
    case kRectangular: return BackwardChunkAt<F, kRectangular, kGainPerElement>(isa);
    case kSigmoid: return BackwardChunkAt<F, kSigmoid, kGainPerElement>(isa);
    case kArctan: return BackwardChunkAt<F, kArctan, kGainPerElement>(isa);
    default: return BackwardChunkAt<F, kTriangle, kGainPerElement>(isa);
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

// The layout of `series` [..., T, N, C] with input gain [..., T, 1 or C]
ffi::ErrorOr<Layout> LayoutOf(const ffi::AnyBuffer& series, const ffi::AnyBuffer& input_gain, int64_t tile,
                              bool gain_sums, bool fold) {
  auto dims = series.dimensions();
  if (dims.size() < 3) return ffi::Unexpected(ffi::Error::InvalidArgument("glif_cpu: inputs must be [..., T, N, C]"));
  const int64_t rank = dims.size();
  auto gain_dims = input_gain.dimensions();
  const int64_t gain_channels = gain_dims.size() == 0 ? 0 : gain_dims[gain_dims.size() - 1];
  Layout s{1, dims[rank - 3], dims[rank - 2], dims[rank - 1], gain_channels == 1 ? 1 : dims[rank - 1], tile,
           gain_sums, fold};
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
      ForwardChunkFor<F>(b.membranes != nullptr, s.gain_per_element(), ChosenIsa());
  ParallelFor(pool, s.problems * chunks, [&](int64_t task) { chunk_function(s, b, task / chunks, task % chunks); });
}

ffi::Error Forward(ffi::ThreadPool pool, ffi::AnyBuffer inputs, ffi::AnyBuffer coefficients, ffi::AnyBuffer input_gain,
                   ffi::AnyBuffer membrane0, ffi::AnyBuffer spike0, ffi::Result<ffi::AnyBuffer> spikes,
                   ffi::Result<ffi::AnyBuffer> membranes, int32_t keep_membranes, int32_t zero_initial) {
  // tiles of one run (only the unit of the chunks) for series of one segment; for longer ones,
  // the backward's tiles: the input gains of a segment are then read once for a tile's rows
  const int64_t steps = inputs.dimensions().size() >= 3 ? inputs.dimensions()[inputs.dimensions().size() - 3] : 0;
  auto layout = LayoutOf(inputs, input_gain, steps > kSegmentSteps ? kBackwardTile : kRun, false, false);
  if (layout.has_error()) return layout.error();
  const Layout s = layout.value();
  const ffi::DataType type = inputs.element_type();
  GLIF_RETURN_IF_ERROR(CheckTypes({&coefficients, &input_gain, &membrane0, &spike0, &*spikes, &*membranes}, type));
  GLIF_RETURN_IF_ERROR(CheckDims("coefficients", coefficients.dimensions(), {kCoefficients, s.channels}, s.problems));
  GLIF_RETURN_IF_ERROR(
      CheckDims("input_gain", input_gain.dimensions(), {s.time_steps, s.gain_channels}, s.problems));
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
  const int64_t chunks = s.chunks(), groups = s.row_groups(), C = s.channels, T = s.time_steps;
  const bool gain_sums = b.inputs != nullptr, per_element = s.gain_per_element();
  // a row group's partial sums, [kCoefficients (+ T per-element gains), C]; a chunk's per-step gain sums, [T]
  const int64_t width = (kCoefficients + (per_element && gain_sums ? T : 0)) * C;
  const int64_t step_width = !per_element && gain_sums ? T : 0;
  std::vector<double> partials(s.problems * groups * width, 0.0), step_partials(s.problems * chunks * step_width, 0.0);
  const BackwardChunkFunction<F> chunk_function = per_element ? BackwardChunkFor<F, true>(o.surrogate, ChosenIsa())
                                                              : BackwardChunkFor<F, false>(o.surrogate, ChosenIsa());
  ParallelFor(pool, s.problems * chunks, [&](int64_t task) {
    const int64_t problem = task / chunks, chunk = task % chunks, group = chunk / s.slabs();
    chunk_function(s, b, o, problem, chunk, &partials[(problem * groups + group) * width],
                   step_partials.data() + task * step_width);
  });
  // add the row groups (and chunks) in order (the same result for any number of threads); apply
  // the signs of the coefficients' terms in the recurrence
  const double sign[kCoefficients] = {1.0, -1.0, -1.0, -1.0, -1.0};  // decay, reset_gate, leak, soft_reset, threshold
  std::vector<double> total(width), step_total(step_width);
  const int64_t gains = T * s.gain_channels;
  for (int64_t problem = 0; problem < s.problems; ++problem) {
    std::fill(total.begin(), total.end(), 0.0);
    std::fill(step_total.begin(), step_total.end(), 0.0);
    for (int64_t group = 0; group < groups; ++group) {
      const double* partial = &partials[(problem * groups + group) * width];
      for (int64_t i = 0; i < width; ++i) total[i] += partial[i];
    }
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      const double* partial = step_partials.data() + (problem * chunks + chunk) * step_width;
      for (int64_t t = 0; t < step_width; ++t) step_total[t] += partial[t];
    }
    for (int64_t i = 0; i < kCoefficients * C; ++i)
      b.grad_coefficients[problem * kCoefficients * C + i] = F(sign[i / C] * total[i]);
    F* grad_gain = b.grad_input_gain + problem * gains;
    if (!gain_sums)
      std::fill(grad_gain, grad_gain + gains, F(0));
    else if (per_element)
      for (int64_t i = 0; i < gains; ++i) grad_gain[i] = F(total[kCoefficients * C + i]);
    else
      for (int64_t t = 0; t < T; ++t) grad_gain[t] = F(step_total[t]);
  }
}

// has_grad_spikes / has_grad_membranes: 0 for a zero cotangent (its operand is a placeholder);
// gain_gradient: 0 where the input gain's gradient is not needed (inputs is then a placeholder
// and grad_input_gain comes out zero).
ffi::Error Backward(ffi::ThreadPool pool, ffi::AnyBuffer inputs, ffi::AnyBuffer membranes, ffi::AnyBuffer coefficients,
                    ffi::AnyBuffer input_gain, ffi::AnyBuffer membrane0, ffi::AnyBuffer spike0,
                    ffi::AnyBuffer grad_spikes, ffi::AnyBuffer grad_membranes, ffi::Result<ffi::AnyBuffer> grad_inputs,
                    ffi::Result<ffi::AnyBuffer> grad_coefficients, ffi::Result<ffi::AnyBuffer> grad_input_gain,
                    ffi::Result<ffi::AnyBuffer> grad_membrane0, ffi::Result<ffi::AnyBuffer> grad_spike0,
                    int32_t surrogate, double width, int32_t has_grad_spikes, int32_t has_grad_membranes,
                    int32_t zero_initial, int32_t gain_gradient) {
  auto layout = LayoutOf(membranes, input_gain, kBackwardTile, gain_gradient != 0, true);
  if (layout.has_error()) return layout.error();
  const Layout s = layout.value();
  const ffi::DataType type = membranes.element_type();
  GLIF_RETURN_IF_ERROR(CheckTypes({&inputs, &coefficients, &input_gain, &membrane0, &spike0, &grad_spikes,
                                   &grad_membranes, &*grad_inputs, &*grad_coefficients, &*grad_input_gain,
                                   &*grad_membrane0, &*grad_spike0},
                                  type));
  const std::initializer_list<int64_t> series = {s.time_steps, s.rows, s.channels}, state = {s.rows, s.channels};
  if (gain_gradient) GLIF_RETURN_IF_ERROR(CheckDims("inputs", inputs.dimensions(), series, s.problems));
  GLIF_RETURN_IF_ERROR(CheckDims("grad_inputs", grad_inputs->dimensions(), series, s.problems));
  GLIF_RETURN_IF_ERROR(CheckDims("coefficients", coefficients.dimensions(), {kCoefficients, s.channels}, s.problems));
  GLIF_RETURN_IF_ERROR(
      CheckDims("input_gain", input_gain.dimensions(), {s.time_steps, s.gain_channels}, s.problems));
  GLIF_RETURN_IF_ERROR(
      CheckDims("grad_input_gain", grad_input_gain->dimensions(), {s.time_steps, s.gain_channels}, s.problems));
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
    BackwardBuffers<F> b{gain_gradient ? inputs.typed_data<F>() : nullptr,
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
                                  .Attr<int32_t>("zero_initial")
                                  .Attr<int32_t>("gain_gradient"));
