// qupaint._C: one pybind11 module over raw buffers (no torch headers).
// The Python layer validates and converts inputs, then passes data pointers and
// element strides; every entry point releases the GIL while it runs.
#include <pybind11/pybind11.h>

#include <string>

#include "cpu/kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef QUPAINT_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace py = pybind11;
using qp::TmmArgs;

namespace {

int cuda_device_count() {
#ifdef QUPAINT_WITH_CUDA
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return count;
#else
  return 0;
#endif
}

TmmArgs tmm_args(std::uintptr_t n, long long n_sb, long long n_sl, long long n_sw, std::uintptr_t d,
                 long long d_sb, long long d_sl, std::uintptr_t sin0, long long sin0_sb,
                 std::uintptr_t wl, long long B, long long L, long long W, int pol,
                 std::uintptr_t out) {
  return TmmArgs{n, n_sb, n_sl, n_sw, d, d_sb, d_sl, sin0, sin0_sb, wl, B, L, W, pol, out};
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "qupaint compiled kernels (CPU C++ and, when built, CUDA)";
  m.attr("__version__") = QUPAINT_VERSION;
  m.def("has_cuda", [] {
#ifdef QUPAINT_WITH_CUDA
    return true;
#else
    return false;
#endif
  }, "True when the CUDA kernels were compiled into this build.");
  m.def("cuda_device_count", &cuda_device_count, "Number of CUDA devices the runtime sees (0 without a driver).");
  m.def("has_openmp", [] {
#ifdef _OPENMP
    return true;
#else
    return false;
#endif
  });
  m.def("max_threads", [] {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
  });

  m.def(
      "tmm_reflectance_cpu",
      [](const std::string& dtype, std::uintptr_t n, long long n_sb, long long n_sl, long long n_sw,
         std::uintptr_t d, long long d_sb, long long d_sl, std::uintptr_t sin0, long long sin0_sb,
         std::uintptr_t wl, long long B, long long L, long long W, int pol, std::uintptr_t out) {
        const TmmArgs a = tmm_args(n, n_sb, n_sl, n_sw, d, d_sb, d_sl, sin0, sin0_sb, wl, B, L, W, pol, out);
        py::gil_scoped_release release;
        if (dtype == "float32") qp::tmm_reflectance_cpu<float>(a);
        else qp::tmm_reflectance_cpu<double>(a);
      });
#ifdef QUPAINT_WITH_CUDA
  m.def(
      "tmm_reflectance_cuda",
      [](const std::string& dtype, std::uintptr_t n, long long n_sb, long long n_sl, long long n_sw,
         std::uintptr_t d, long long d_sb, long long d_sl, std::uintptr_t sin0, long long sin0_sb,
         std::uintptr_t wl, long long B, long long L, long long W, int pol, std::uintptr_t out,
         std::uintptr_t stream) {
        const TmmArgs a = tmm_args(n, n_sb, n_sl, n_sw, d, d_sb, d_sl, sin0, sin0_sb, wl, B, L, W, pol, out);
        py::gil_scoped_release release;
        if (dtype == "float32") qp::tmm_reflectance_cuda<float>(a, stream);
        else qp::tmm_reflectance_cuda<double>(a, stream);
      });
#endif
}
