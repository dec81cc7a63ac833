using System.Diagnostics.CodeAnalysis;

namespace LowRankOptim;

/// <summary>
/// The complete options of each method (learning rate, weight decay and its order, projection, update rule)
/// with its published or reference defaults: <c>LowRankPresets.GaLore(rank: 64)</c> is what
/// <c>LowRank.GaLore(parameters, rank: 64)</c> builds its optimizer with. Use a preset as the defaults of a
/// <see cref="LowRankOptimizer"/>, as one group's options (one call per group: an options object belongs to
/// one group), or to read a method's settings without building an optimizer.
/// </summary>
/// <remarks>
/// Arguments are the method's knobs with the names and order of the <see cref="LowRank"/> factories (the rule
/// is at the top of that class). Every call returns a new, validated object; an invalid knob throws an
/// <see cref="ArgumentException"/> whose <see cref="ArgumentException.ParamName"/> is the knob's name.
/// Each method lives in its own file of <c>Presets/</c>, its preset and its factories together.
/// </remarks>
[SuppressMessage("Naming", "CA1707", Justification = "Parameter names follow torch.optim and the reference implementations.")]
public static partial class LowRankPresets
{
    /// <summary>How validation messages name the presets' values (they are the optimizer's defaults).</summary>
    private const string Where = "optimizer defaults";

    /// <summary>Validates <paramref name="options"/> (throwing with the knob's name) and returns it.</summary>
    private static LowRankOptions Validated(LowRankOptions options)
    {
        options.Validate(Where);
        return options;
    }

    /// <summary>Options with Adam as the rule, under galore_torch's or torch.optim's conventions.</summary>
    private static LowRankOptions AdamOptions(double lr, double beta1, double beta2, double eps, double weight_decay,
        bool correct_bias, AdamConventions conventions, IProjectionConfig projection, int optim_bits, bool bf16_stochastic_round, int block_size)
    {
        if (!Enum.IsDefined(conventions))
            throw new ArgumentOutOfRangeException(nameof(conventions), conventions, $"must be one of {string.Join(", ", Enum.GetNames<AdamConventions>())}.");
        var reference = conventions == AdamConventions.GaLoreReference;
        return Validated(new LowRankOptions
        {
            LearningRate = lr,
            WeightDecay = weight_decay,
            DecayOrder = reference ? WeightDecayOrder.AfterUpdate : WeightDecayOrder.BeforeUpdate,
            Projection = projection,
            Rule = new AdamConfig(beta1, beta2, eps, correct_bias,
                reference ? AdamEpsilonMode.BeforeBiasCorrection : AdamEpsilonMode.AfterBiasCorrection),
            MomentStorage = Storage(optim_bits, block_size),
            WeightRounding = Rounding(bf16_stochastic_round),
        });
    }

    /// <summary>The weight rounding of torchao's <c>bf16_stochastic_round</c>: stochastic with seed 0, or nearest.</summary>
    private static WeightRounding Rounding(bool bf16_stochastic_round) =>
        bf16_stochastic_round ? WeightRounding.Stochastic() : WeightRounding.Nearest;

    /// <summary>
    /// The moment storage of bitsandbytes' <c>optim_bits</c> in blocks of torchao's <c>block_size</c> (0: the format's
    /// default), with nearest rounding (stochastic rounding is set through <see cref="LowRankOptions.MomentStorage"/>): an
    /// invalid value names the knob as the user typed it (an invalid block_size is refused by validation, naming block_size).
    /// </summary>
    private static MomentStorage Storage(int optim_bits, int block_size)
    {
        try
        {
            return MomentStorage.FromOptimBits(optim_bits, blockSize: block_size);
        }
        catch (ArgumentOutOfRangeException e)
        {
            // FromOptimBits names its C# parameter; the presets' knob is optim_bits.
            throw new ArgumentOutOfRangeException(nameof(optim_bits), optim_bits,
                $"optim_bits must be 32 (dense), 16 (bfloat16), 8 (block-wise 8-bit) or 4 (block-wise 4-bit); {e.ParamName} = {e.ActualValue} is none of them.");
        }
    }

    /// <summary>GaLore's projection: the exact SVD, or randomized subspace iteration with its sketch knobs.</summary>
    private static IProjectionConfig GaLoreProjection(int rank, int update_proj_gap, double scale, ProjectionType proj_type,
        GaLoreProjector projector, int? oversampling, int? power_iterations, long? seed)
    {
        switch (projector)
        {
            case GaLoreProjector.Svd:
                if (oversampling is not null) throw OnlyRandomized(nameof(oversampling), oversampling);
                if (power_iterations is not null) throw OnlyRandomized(nameof(power_iterations), power_iterations);
                if (seed is not null) throw OnlyRandomized(nameof(seed), seed);
                return new SvdProjection(rank, update_proj_gap, scale, proj_type);
            case GaLoreProjector.RandomizedSvd:
                return new RandomizedSvdProjection(rank, update_proj_gap, scale, proj_type,
                    Oversampling: oversampling ?? 8, PowerIterations: power_iterations ?? 2, Seed: seed ?? 0);
            default:
                throw new ArgumentOutOfRangeException(nameof(projector), projector, $"must be one of {string.Join(", ", Enum.GetNames<GaLoreProjector>())}.");
        }
    }

    private static ArgumentException OnlyRandomized(string name, object? value) =>
        new($"{name} = {value} applies only to projector: GaLoreProjector.RandomizedSvd; the exact SVD projector has no such option.", name);
}
