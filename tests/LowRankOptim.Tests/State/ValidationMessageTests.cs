using FluentAssertions;
using Xunit;

namespace LowRankOptim.Tests.State;

/// <summary>
/// Validation messages of the library's configs, pinned as release 1 wrote them (before the config schemas): the
/// exception type, the parameter name (the torch-style option name) and the whole message (place, option, constraint, value).
/// </summary>
public sealed class ValidationMessageTests
{
    public static TheoryData<string, object, Type, string, string> InvalidConfigs() => new()
    {
        { "adam beta1 1", new AdamConfig(Beta1: 1.0), typeof(ArgumentOutOfRangeException), "beta1",
            "parameter group 2: beta1 must be in [0, 1). (Parameter 'beta1')\nActual value was 1." },
        { "adam beta2 nan", new AdamConfig(Beta2: double.NaN), typeof(ArgumentOutOfRangeException), "beta2",
            "parameter group 2: beta2 must be in [0, 1). (Parameter 'beta2')\nActual value was NaN." },
        { "adam eps inf", new AdamConfig(Eps: double.PositiveInfinity), typeof(ArgumentOutOfRangeException), "eps",
            "parameter group 2: eps must be finite and >= 0. (Parameter 'eps')\nActual value was Infinity." },
        { "adam eps_mode 5", new AdamConfig(EpsMode: (AdamEpsilonMode)5), typeof(ArgumentOutOfRangeException), "EpsMode",
            "parameter group 2: EpsMode must be one of AfterBiasCorrection, BeforeBiasCorrection. (Parameter 'EpsMode')\nActual value was 5." },
        { "adam kernel 9", new AdamConfig(Kernel: (KernelPreference)9), typeof(ArgumentOutOfRangeException), "kernel",
            "parameter group 2: kernel must be one of Auto, Reference, Cpu, Cuda. (Parameter 'kernel')\nActual value was 9." },
        { "adafactor beta1 -0.1", new AdafactorConfig(Beta1: -0.1), typeof(ArgumentOutOfRangeException), "beta1",
            "parameter group 2: beta1 must be in [0, 1). (Parameter 'beta1')\nActual value was -0.1." },
        { "adafactor eps1 0", new AdafactorConfig(Eps1: 0), typeof(ArgumentOutOfRangeException), "eps1",
            "parameter group 2: eps1 must be > 0. (Parameter 'eps1')\nActual value was 0." },
        { "adafactor eps2 -1", new AdafactorConfig(Eps2: -1), typeof(ArgumentOutOfRangeException), "eps2",
            "parameter group 2: eps2 must be >= 0. (Parameter 'eps2')\nActual value was -1." },
        { "adafactor clip 0", new AdafactorConfig(ClipThreshold: 0), typeof(ArgumentOutOfRangeException), "clip_threshold",
            "parameter group 2: clip_threshold must be > 0. (Parameter 'clip_threshold')\nActual value was 0." },
        { "adafactor decay_rate 0", new AdafactorConfig(DecayRate: 0), typeof(ArgumentOutOfRangeException), "decay_rate",
            "parameter group 2: decay_rate must be < 0 (β2,k = 1 − k^decay_rate). (Parameter 'decay_rate')\nActual value was 0." },
        { "adafactor kernel 9", new AdafactorConfig(Kernel: (KernelPreference)9), typeof(ArgumentOutOfRangeException), "kernel",
            "parameter group 2: kernel must be one of Auto, Reference, Cpu, Cuda. (Parameter 'kernel')\nActual value was 9." },
        { "adafactor warmup", new AdafactorConfig(RelativeStep: false, WarmupInit: true), typeof(ArgumentException), "warmup_init",
            "parameter group 2: warmup_init = true requires relative_step = true. (Parameter 'warmup_init')" },
        { "sgd momentum 1", new SgdConfig(Momentum: 1), typeof(ArgumentOutOfRangeException), "momentum",
            "parameter group 2: momentum must be in [0, 1). (Parameter 'momentum')\nActual value was 1." },
        { "sgd dampening 2", new SgdConfig(Dampening: 2), typeof(ArgumentOutOfRangeException), "dampening",
            "parameter group 2: dampening must be in [0, 1]. (Parameter 'dampening')\nActual value was 2." },
        { "sgd nesterov", new SgdConfig(Momentum: 0.5, Dampening: 0.1, Nesterov: true), typeof(ArgumentException), "nesterov",
            "parameter group 2: nesterov = true needs momentum > 0 and dampening = 0 (momentum 0.5, dampening 0.1). (Parameter 'nesterov')" },
        { "smmf beta 1", new SmmfConfig(Beta: 1), typeof(ArgumentOutOfRangeException), "beta",
            "parameter group 2: beta must be in [0, 1). (Parameter 'beta')\nActual value was 1." },
        { "smmf eps -1", new SmmfConfig(Eps: -1), typeof(ArgumentOutOfRangeException), "eps",
            "parameter group 2: eps must be finite and >= 0. (Parameter 'eps')\nActual value was -1." },
        { "smmf decay -inf", new SmmfConfig(DecayRate: double.NegativeInfinity), typeof(ArgumentOutOfRangeException), "decay_rate",
            "parameter group 2: decay_rate must be finite and <= 0 (β2,k = 1 − k^decay_rate must lie in [0, 1)). (Parameter 'decay_rate')\nActual value was -Infinity." },
        { "smmf growth 2", new SmmfConfig(GrowthRate: 2), typeof(ArgumentOutOfRangeException), "growth_rate",
            "parameter group 2: growth_rate must be in [0, 1] (β1,k = beta·growth_rate^(k−1) must stay below 1). (Parameter 'growth_rate')\nActual value was 2." },
        { "smmf kernel 9", new SmmfConfig(Kernel: (KernelPreference)9), typeof(ArgumentOutOfRangeException), "kernel",
            "parameter group 2: kernel must be one of Auto, Reference, Cpu, Cuda. (Parameter 'kernel')\nActual value was 9." },
        { "svd rank 0", new SvdProjection(Rank: 0), typeof(ArgumentOutOfRangeException), "rank",
            "parameter group 2: rank must be >= 1. (Parameter 'rank')\nActual value was 0." },
        { "svd gap 0", new SvdProjection(UpdateProjGap: 0), typeof(ArgumentOutOfRangeException), "update_proj_gap",
            "parameter group 2: update_proj_gap must be >= 1. (Parameter 'update_proj_gap')\nActual value was 0." },
        { "svd scale nan", new SvdProjection(Scale: double.NaN), typeof(ArgumentOutOfRangeException), "scale",
            "parameter group 2: scale must be finite and > 0. (Parameter 'scale')\nActual value was NaN." },
        { "svd type 9", new SvdProjection(Type: (ProjectionType)9), typeof(ArgumentOutOfRangeException), "proj_type",
            "parameter group 2: proj_type must be one of Std, ReverseStd, Left, Right, Full. (Parameter 'proj_type')\nActual value was 9." },
        { "svd tensors 4", new SvdProjection(Tensors: (TensorsProjected)4), typeof(ArgumentOutOfRangeException), "Tensors",
            "parameter group 2: Tensors must be one of MatricesOnly, MatricesAndFlattenedKernels. (Parameter 'Tensors')\nActual value was 4." },
        { "rsvd rank 0", new RandomizedSvdProjection(Rank: 0), typeof(ArgumentOutOfRangeException), "rank",
            "parameter group 2: rank must be >= 1. (Parameter 'rank')\nActual value was 0." },
        { "rsvd type 9", new RandomizedSvdProjection(Type: (ProjectionType)9), typeof(ArgumentOutOfRangeException), "proj_type",
            "parameter group 2: proj_type must be one of Std, ReverseStd, Left, Right, Full. (Parameter 'proj_type')\nActual value was 9." },
        { "rsvd oversampling -1", new RandomizedSvdProjection(Oversampling: -1), typeof(ArgumentOutOfRangeException), "oversampling",
            "parameter group 2: oversampling must be >= 0. (Parameter 'oversampling')\nActual value was -1." },
        { "rsvd power -1", new RandomizedSvdProjection(PowerIterations: -1), typeof(ArgumentOutOfRangeException), "power_iterations",
            "parameter group 2: power_iterations must be >= 0. (Parameter 'power_iterations')\nActual value was -1." },
        { "dct rank 0", new DctProjection(Rank: 0), typeof(ArgumentOutOfRangeException), "rank",
            "parameter group 2: rank must be >= 1. (Parameter 'rank')\nActual value was 0." },
        { "dct scale inf", new DctProjection(Scale: double.PositiveInfinity), typeof(ArgumentOutOfRangeException), "scale",
            "parameter group 2: scale must be finite and > 0. (Parameter 'scale')\nActual value was Infinity." },
        { "dct sim_type 5", new DctProjection(Method: (DctTransformMethod)5), typeof(ArgumentOutOfRangeException), "sim_type",
            "parameter group 2: sim_type must be one of MatrixProduct, FastTransform, FastTransformProjection. (Parameter 'sim_type')\nActual value was 5." },
        { "dct ell_norm 0.5", new DctProjection(ScoreNorm: 0.5), typeof(ArgumentOutOfRangeException), "ell_norm",
            "parameter group 2: ell_norm must be >= 1 (or +infinity). (Parameter 'ell_norm')\nActual value was 0.5." },
        { "dct max_shape 0", new DctProjection(MaxShape: 0), typeof(ArgumentOutOfRangeException), "max_shape",
            "parameter group 2: max_shape must be >= 1. (Parameter 'max_shape')\nActual value was 0." },
        { "dct type full", new DctProjection(Type: ProjectionType.Full), typeof(ArgumentOutOfRangeException), "proj_type",
            "parameter group 2: proj_type must be one of Std, ReverseStd, Left, Right (the DCT projector selects columns on one side). (Parameter 'proj_type')\nActual value was Full." },
        { "dct type 9", new DctProjection(Type: (ProjectionType)9), typeof(ArgumentOutOfRangeException), "proj_type",
            "parameter group 2: proj_type must be one of Std, ReverseStd, Left, Right (the DCT projector selects columns on one side). (Parameter 'proj_type')\nActual value was 9." },
        { "dct tensors 3", new DctProjection(Tensors: (TensorsProjected)3), typeof(ArgumentOutOfRangeException), "Tensors",
            "parameter group 2: Tensors must be one of MatricesOnly, MatricesAndFlattenedKernels. (Parameter 'Tensors')\nActual value was 3." },
        { "dct kernel 7", new DctProjection { Kernel = (KernelPreference)7 }, typeof(ArgumentOutOfRangeException), "kernel",
            "parameter group 2: kernel must be one of Auto, Reference, Cpu, Cuda. (Parameter 'kernel')\nActual value was 7." },
        { "osd rank 0", new OnlinePcaProjection(Rank: 0), typeof(ArgumentOutOfRangeException), "rank",
            "parameter group 2: rank must be >= 1. (Parameter 'rank')\nActual value was 0." },
        { "osd type full", new OnlinePcaProjection(Type: ProjectionType.Full), typeof(ArgumentOutOfRangeException), "proj_type",
            "parameter group 2: proj_type must be one of Std, ReverseStd, Left, Right (Online Subspace Descent learns one basis). (Parameter 'proj_type')\nActual value was Full." },
        { "osd type 9", new OnlinePcaProjection(Type: (ProjectionType)9), typeof(ArgumentOutOfRangeException), "proj_type",
            "parameter group 2: proj_type must be one of Std, ReverseStd, Left, Right, Full. (Parameter 'proj_type')\nActual value was 9." },
        { "osd tensors 9", new OnlinePcaProjection(Tensors: (TensorsProjected)9), typeof(ArgumentOutOfRangeException), "Tensors",
            "parameter group 2: Tensors must be one of MatricesOnly, MatricesAndFlattenedKernels. (Parameter 'Tensors')\nActual value was 9." },
        { "osd p_weight_decay -1", new OnlinePcaProjection(BasisWeightDecay: -1), typeof(ArgumentOutOfRangeException), "p_weight_decay",
            "parameter group 2: p_weight_decay must be finite and >= 0. (Parameter 'p_weight_decay')\nActual value was -1." },
        { "osd basis adam beta2 1", new OnlinePcaProjection(BasisRule: new AdamConfig(Beta2: 1)), typeof(ArgumentOutOfRangeException), "beta2",
            "parameter group 2, the basis optimizer: beta2 must be in [0, 1). (Parameter 'beta2')\nActual value was 1." },
        { "osd basis adafactor relative", new OnlinePcaProjection(BasisRule: new AdafactorConfig()), typeof(ArgumentException), "p_optimizer",
            "parameter group 2: the basis optimizer cannot use Adafactor's relative_step (its step size must follow η_P = (1/T)·(η_k/η_0)). (Parameter 'p_optimizer')" },
        { "osd basis adafactor warmup", new OnlinePcaProjection(BasisRule: new AdafactorConfig(RelativeStep: false, WarmupInit: true)), typeof(ArgumentException), "warmup_init",
            "parameter group 2, the basis optimizer: warmup_init = true requires relative_step = true. (Parameter 'warmup_init')" },
        { "gp rank 0", new GaLorePlusProjection(Rank: 0), typeof(ArgumentOutOfRangeException), "rank",
            "parameter group 2: rank must be >= 1. (Parameter 'rank')\nActual value was 0." },
        { "gp gap 0", new GaLorePlusProjection(UpdateProjGap: 0), typeof(ArgumentOutOfRangeException), "update_proj_gap",
            "parameter group 2: update_proj_gap must be >= 1. (Parameter 'update_proj_gap')\nActual value was 0." },
        { "gp oversampling -1", new GaLorePlusProjection(Oversampling: -1), typeof(ArgumentOutOfRangeException), "oversampling",
            "parameter group 2: oversampling must be >= 0. (Parameter 'oversampling')\nActual value was -1." },
        { "gp power -1", new GaLorePlusProjection(PowerIterations: -1), typeof(ArgumentOutOfRangeException), "power_iterations",
            "parameter group 2: power_iterations must be >= 0. (Parameter 'power_iterations')\nActual value was -1." },
        { "gp heads 0", new GaLorePlusProjection(Heads: new AttentionHeads(0, HeadAxis.Rows)), typeof(ArgumentOutOfRangeException), "heads",
            "parameter group 2: heads must be >= 1. (Parameter 'heads')\nActual value was 0." },
        { "gp heads -2", new GaLorePlusProjection(Heads: new AttentionHeads(-2, HeadAxis.Columns)), typeof(ArgumentOutOfRangeException), "heads",
            "parameter group 2: heads must be >= 1. (Parameter 'heads')\nActual value was -2." },
        { "gp head_axis 5", new GaLorePlusProjection(Heads: new AttentionHeads(2, (HeadAxis)5)), typeof(ArgumentOutOfRangeException), "head_axis",
            "parameter group 2: head_axis must be one of Rows, Columns. (Parameter 'head_axis')\nActual value was 5." },
        { "gp cross_head 3", new GaLorePlusProjection(Reading: (CrossHeadReading)3), typeof(ArgumentOutOfRangeException), "cross_head",
            "parameter group 2: cross_head must be one of SharedLongSide, PerHeadShortSide. (Parameter 'cross_head')\nActual value was 3." },
        { "gp density 2", new GaLorePlusProjection(ResidualDensity: 2), typeof(ArgumentOutOfRangeException), "residual_density",
            "parameter group 2: residual_density must be in [0, 1]. (Parameter 'residual_density')\nActual value was 2." },
        { "gp warmup -1", new GaLorePlusProjection(ResidualWarmup: -1), typeof(ArgumentOutOfRangeException), "residual_warmup",
            "parameter group 2: residual_warmup must be >= 0. (Parameter 'residual_warmup')\nActual value was -1." },
        { "gp residual_scale inf", new GaLorePlusProjection(ResidualScale: double.PositiveInfinity), typeof(ArgumentOutOfRangeException), "residual_scale",
            "parameter group 2: residual_scale must be finite and > 0. (Parameter 'residual_scale')\nActual value was Infinity." },
        { "gp tensors 5", new GaLorePlusProjection(Tensors: (TensorsProjected)5), typeof(ArgumentOutOfRangeException), "Tensors",
            "parameter group 2: Tensors must be one of MatricesOnly, MatricesAndFlattenedKernels. (Parameter 'Tensors')\nActual value was 5." },
    };

    [Theory]
    [MemberData(nameof(InvalidConfigs))]
    public void MessagesNameThePlaceTheOptionTheConstraintAndTheValue(string what, object config, Type exception, string parameter, string message)
    {
        var validate = config is IProjectionConfig projection
            ? () => projection.Validate("parameter group 2")
            : (Action)(() => ((IUpdateRuleConfig)config).Validate("parameter group 2"));
        var thrown = validate.Should().Throw<ArgumentException>(what).Which;
        thrown.GetType().Should().Be(exception, what);
        thrown.ParamName.Should().Be(parameter, what);
        thrown.Message.Should().Be(message, what);
    }
}
