namespace LowRankOptim.Kernels;

/// <summary>How a value is rounded to the stored format (a quantization code, or bfloat16).</summary>
public enum StateRounding
{
    /// <summary>To the nearest representable value (codes: ties up, as torchao; bfloat16: ties to even). Deterministic.</summary>
    Nearest,
    /// <summary>
    /// Down or up at random, with the probability of up equal to the distance from the lower neighbour over the gap, so the
    /// stored value is unbiased. The random numbers come from <see cref="RoundingNoise"/>: a pure function of a seed, the
    /// state entry, the step and the element, so a resumed run rounds exactly as an uninterrupted one.
    /// </summary>
    Stochastic,
}

/// <summary>The rounding of one store of one state tensor: the mode and, for stochastic rounding, the key of its random numbers.</summary>
/// <param name="Mode">Nearest or stochastic.</param>
/// <param name="Key">The 32-bit key of this store (<see cref="RoundingNoise.Key"/>); unused for nearest rounding.</param>
public readonly record struct Rounding(StateRounding Mode, uint Key)
{
    /// <summary>Deterministic rounding to nearest.</summary>
    public static Rounding Nearest => new(StateRounding.Nearest, 0);
}
