using LowRankOptim.Kernels;

namespace LowRankOptim;

/// <summary>
/// Which implementation of a rule's element-wise arithmetic runs (see docs/kernels.md). The environment
/// variable <c>LOWRANKOPTIM_KERNELS</c> (auto, reference, cpu, cuda) overrides <see cref="Auto"/>; an explicit
/// value set in code wins over the variable. An explicit value that cannot be honoured for a parameter fails
/// when the optimizer is built, with an <see cref="ArgumentException"/> for the option <c>kernel</c> that says
/// what the kernel needs, what the parameter's state is, and what to use instead.
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
    /// in a dtype the kernel takes (float32, and bfloat16 where the rule keeps bf16 state), or is 2 GiB or more.
    /// </summary>
    Cpu,
    /// <summary>
    /// Always the CUDA kernels (compiled with NVRTC at first use). The optimizer cannot be built, with the
    /// reason, when the state is not on a CUDA device or NVRTC or the CUDA driver cannot be loaded.
    /// </summary>
    Cuda,
}

/// <summary>The boundary between the user's <see cref="KernelPreference"/> and the kernel assembly's <see cref="KernelBackend"/>.</summary>
internal static class KernelPreferences
{
    /// <summary>
    /// The backend <paramref name="preference"/> names, or null for <see cref="KernelPreference.Auto"/> (automatic
    /// selection, which <see cref="KernelSelection.EnvironmentVariable"/> can override).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Not a defined preference; the parameter name is "kernel".</exception>
    internal static KernelBackend? Backend(this KernelPreference preference) => preference switch
    {
        KernelPreference.Auto => null,
        KernelPreference.Reference => KernelBackend.Reference,
        KernelPreference.Cpu => KernelBackend.Cpu,
        KernelPreference.Cuda => KernelBackend.Cuda,
        _ => throw new ArgumentOutOfRangeException("kernel", preference, $"must be one of {string.Join(", ", Enum.GetNames<KernelPreference>())}."),
    };
}
