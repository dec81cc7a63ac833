using LowRankOptim.Kernels;

namespace LowRankOptim;

/// <summary>
/// How a step's result is rounded into a group's bfloat16 parameters (<see cref="LowRankOptions.WeightRounding"/>).
/// A bfloat16 weight W keeps 8 significant bits: W ← W − c·U rounded to nearest loses every update smaller than half an
/// ulp of W (|W|·2⁻⁹), and training on bf16 weights stalls once the updates are that small. With
/// <see cref="StateRounding.Stochastic"/> the new weight is computed in float32 and rounded up or down at random, with the
/// probability of the farther neighbour proportional to the distance (torchao's <c>bf16_stochastic_round</c>), so the
/// rounded weight is unbiased and small updates accumulate in expectation. Part of the math configuration: saved with the
/// group's options, and a checkpoint loads only into a group with the same weight rounding.
/// </summary>
/// <remarks>
/// <para>
/// It applies to the group's bfloat16 parameters. float32 and float64 parameters are stepped exactly as with
/// <see cref="StateRounding.Nearest"/> (their step already computes in their own precision: there is nothing to round to
/// bf16), so a mixed group (bf16 weights, float32 norms) is accepted; a group whose parameters include none in bfloat16 is
/// refused when it is added (the option would be ignored), and so is a float16 parameter in a stochastic group (there is no
/// stochastic rounding to float16).
/// </para>
/// <para>
/// The random numbers are those of <see cref="RoundingNoise"/>, keyed by (<see cref="Seed"/>, the parameter's stream, the
/// step): nothing is saved, and a resumed run rounds exactly as an uninterrupted one, in the per-layer mode and on every
/// rank of a data-parallel run alike. The parameter's stream is 2⁶³ + its index in the optimizer (disjoint from the
/// streams of the moments' stochastic rounding).
/// </para>
/// <para>
/// Memory: the fused CPU kernel (<see cref="IWeightUpdateKernel"/>) writes the weights in place in one pass: 0 bytes of
/// workspace. A stochastic step still forms the update U before rounding. In the full space, Adam with dense moments
/// (AdamW, and the full-space groups of every Adam-based method) forms its direction 2²⁰ elements at a time: a workspace
/// of at most 2²⁰ × 2 bytes = 2 MiB for bf16 moments, whatever the parameter's size (a 32000×4096 embedding included);
/// other rules (block-wise moments, Adafactor, SMMF, SGD) form the direction of the whole parameter, numel × the working
/// dtype's size (2 bytes an element in bf16, 4 for Adafactor and SMMF, which work in float32), as their nearest-rounded
/// step does. In a projected group the subspace's update (W − c·Back(N), or its own terms) is written into a zeroed
/// buffer of the parameter's numel × the working dtype's size instead of into W. Each lives during that parameter's step
/// only. The reference kernel (CUDA tensors, strided parameters) adds a float32 copy of W and int64 noise tensors (about
/// 40 bytes an element).
/// </para>
/// </remarks>
/// <param name="Mode">Nearest (the default: today's rounding of the bf16 arithmetic) or stochastic.</param>
/// <param name="Seed">The seed of stochastic rounding; must be 0 with nearest rounding (it would be ignored).</param>
public sealed record WeightRounding(StateRounding Mode = StateRounding.Nearest, long Seed = 0)
{
    /// <summary>Rounding to nearest (the default).</summary>
    public static WeightRounding Nearest { get; } = new();

    /// <summary>Stochastic rounding of bfloat16 weights with the random numbers of <paramref name="seed"/>.</summary>
    /// <param name="seed">The seed.</param>
    public static WeightRounding Stochastic(long seed = 0) => new(StateRounding.Stochastic, seed);

    /// <summary>The stream of the weights of the parameter with index <paramref name="parameterIndex"/> in its optimizer.</summary>
    /// <param name="parameterIndex">The parameter's index in the optimizer (its place in <c>state_dict()</c>).</param>
    internal static ulong StreamOf(int parameterIndex) => (1UL << 63) | (uint)parameterIndex;

    /// <summary>The rounding of the step <paramref name="step"/> of the parameter with <paramref name="stream"/>.</summary>
    internal Rounding At(ulong stream, long step) =>
        Mode == StateRounding.Stochastic ? new(StateRounding.Stochastic, RoundingNoise.Key(Seed, stream, step)) : Rounding.Nearest;

    /// <summary>Throws <see cref="ArgumentException"/> naming the option, the value and the constraint.</summary>
    /// <param name="where">Where the option is used ("parameter group 0").</param>
    public void Validate(string where)
    {
        if (!Enum.IsDefined(Mode))
            throw new ArgumentOutOfRangeException("weight_rounding", Mode, $"{where}: weight rounding must be one of {string.Join(", ", Enum.GetNames<StateRounding>())}.");
        if (Mode == StateRounding.Nearest && Seed != 0)
            throw new ArgumentException($"{where}: weight rounding seed = {Seed} is used by stochastic rounding only; with Nearest it must be 0.", "weight_rounding");
    }

    /// <summary>
    /// Refuses a stochastic rounding that a group's parameters would ignore: a float16 parameter, or parameters none of
    /// which is bfloat16 (an empty group is accepted).
    /// </summary>
    /// <param name="dtypes">The dtypes of the group's parameters, in order.</param>
    /// <param name="where">The group ("parameter group 0").</param>
    internal void CheckParameters(IReadOnlyList<TorchSharp.torch.ScalarType> dtypes, string where)
    {
        if (Mode != StateRounding.Stochastic || dtypes.Count == 0) return;
        var half = dtypes.ToList().FindIndex(d => d == TorchSharp.torch.ScalarType.Float16);
        if (half >= 0)
            throw new ArgumentException(
                $"{where}: weight_rounding = {this} rounds bfloat16 weights, but parameter {half} is float16; there is no stochastic rounding to float16. " +
                "Train float16 parameters in a group with WeightRounding.Nearest, or convert them to bfloat16.", "weight_rounding");
        if (!dtypes.Contains(TorchSharp.torch.ScalarType.BFloat16))
            throw new ArgumentException(
                $"{where}: weight_rounding = {this} rounds bfloat16 weights, but none of the group's {dtypes.Count} parameters is bfloat16 " +
                $"({string.Join(", ", dtypes.Distinct())}: their steps are not rounded to bf16, so the option would be ignored). " +
                "Use WeightRounding.Nearest for this group, or build the model in bfloat16.", "weight_rounding");
    }

    /// <inheritdoc />
    public override string ToString() => Mode == StateRounding.Nearest ? "Nearest" : $"Stochastic (seed {Seed})";
}
