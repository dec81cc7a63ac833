namespace LowRankOptim;

/// <summary>Which implementation of a rule's element-wise arithmetic runs.</summary>
public enum KernelPreference
{
    /// <summary>The fused CPU kernel where it applies (contiguous float32 state and gradient on the CPU), else the reference.</summary>
    Auto,
    /// <summary>Always the reference path in TorchSharp ops (any device and dtype); the fused kernels are tested against it.</summary>
    Reference,
    /// <summary>
    /// Always the fused CPU kernel. The optimizer cannot be built when a parameter's state is not float32 on
    /// the CPU (bf16 and fp16 parameters qualify: their state is float32).
    /// </summary>
    Cpu,
}
