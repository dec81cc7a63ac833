namespace LowRankOptim;

/// <summary>
/// Which implementation of a rule's element-wise arithmetic runs (see docs/kernels.md). The environment
/// variable <c>LOWRANKOPTIM_KERNELS</c> (auto, reference, cpu, cuda) overrides <see cref="Auto"/>; an explicit
/// value set in code wins over the variable.
/// </summary>
public enum KernelPreference
{
    /// <summary>
    /// The fastest implementation that applies to the parameter's device and dtype: the CPU SIMD kernels for
    /// contiguous CPU tensors, the CUDA kernels for CUDA tensors when NVRTC and the driver load, else the
    /// reference. Falls back silently, also per call for a tensor a kernel cannot take (say, non-contiguous).
    /// </summary>
    Auto,
    /// <summary>Always the reference path in TorchSharp ops (any device and dtype); the fused kernels are tested against it.</summary>
    Reference,
    /// <summary>
    /// Always the CPU SIMD kernels. The optimizer cannot be built when a parameter's state is not on the CPU
    /// in a dtype the kernel takes (float32, and bfloat16 where the rule keeps bf16 state).
    /// </summary>
    Cpu,
    /// <summary>
    /// Always the CUDA kernels (compiled with NVRTC at first use). The optimizer cannot be built, with the
    /// reason, when the state is not on a CUDA device or NVRTC or the CUDA driver cannot be loaded.
    /// </summary>
    Cuda,
}
