namespace LowRankOptim.Kernels;

/// <summary>
/// A family of kernel implementations. Every backend runs on one kind of device; which operations and storages
/// it covers is what it registers in <see cref="KernelRegistry"/>. The library's <c>KernelPreference</c> maps
/// onto these (its <c>Auto</c> is "no backend named", <see langword="null"/> in <see cref="KernelSelection"/>).
/// </summary>
public enum KernelBackend
{
    /// <summary>The reference path in TorchSharp ops: any device, registered for every operation and dense dtype.</summary>
    Reference,
    /// <summary>Fused CPU SIMD kernels: CPU tensors only.</summary>
    Cpu,
    /// <summary>CUDA kernels compiled with NVRTC: CUDA tensors only, when the driver and NVRTC load.</summary>
    Cuda,
}
