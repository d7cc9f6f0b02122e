/// @file
/// @brief Keeps freed tensor memory in the process on glibc, so that CPU training does not page-fault its
///        activations in again at every step.
///
/// LibTorch's CPU allocator is plain malloc. glibc serves blocks above its mmap threshold with mmap and returns
/// them with munmap on free, and trims the heap top; a training step then allocates the same activation
/// buffers afresh and the kernel zero-fills every page on first touch. Measured with `perf` on a phantom
/// pretraining step (batch 64, one thread): 19 % of the time was page faults, and raising the thresholds made
/// the denoiser step 1.6× and the autoencoder step 2× faster, with bit-identical losses. Programs call
/// retain_freed_memory() once at start; a library never changes process-wide malloc settings behind a user's back.
#pragma once

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace cxrl::io {

/// @brief Raises glibc's mmap threshold to its maximum (32 MiB) and disables heap trimming; a no-op
///        elsewhere. @return true when the settings were applied.
inline bool retain_freed_memory() {
#if defined(__GLIBC__)
  return mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024) == 1 && mallopt(M_TRIM_THRESHOLD, -1) == 1 &&
         mallopt(M_TOP_PAD, 64 * 1024 * 1024) == 1;
#else
  return false;
#endif
}

}  // namespace cxrl::io
