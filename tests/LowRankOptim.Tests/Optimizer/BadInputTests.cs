using FluentAssertions;
using LowRankOptim.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Optimizer;

/// <summary>
/// Invalid factory arguments, options and files throw an exception that names the argument (or parameter), the
/// value and the constraint. What every method must refuse (group options, gradients) is in Conformance/RefusedInputTests.
/// </summary>
public sealed class BadInputTests
{
    private static Parameter[] Params() => [new Parameter(randn(6, 4)), new Parameter(randn(4))];

    public static TheoryData<string, Action, string, string> InvalidArguments() => new()
    {
        { "negative lr", () => LowRank.GaLore(Params(), lr: -0.1), "lr", "*>= 0*-0.1*" },
        { "NaN lr", () => LowRank.AdamW(Params(), lr: double.NaN), "lr", "*NaN*" },
        { "beta1 = 1", () => LowRank.GaLore(Params(), beta1: 1.0), "beta1", "*[0, 1)*1*" },
        { "beta2 < 0", () => LowRank.AdamW(Params(), beta2: -0.1), "beta2", "*[0, 1)*-0.1*" },
        { "negative eps", () => LowRank.GaLore(Params(), eps: -1e-8), "eps", "*>= 0*" },
        { "negative weight decay", () => LowRank.GaLore(Params(), weight_decay: -0.01), "weight_decay", "*>= 0*-0.01*" },
        { "rank 0", () => LowRank.GaLore(Params(), rank: 0), "rank", "*>= 1*0*" },
        { "update_proj_gap 0", () => LowRank.GaLore(Params(), update_proj_gap: 0), "update_proj_gap", "*>= 1*0*" },
        { "scale 0", () => LowRank.GaLore(Params(), scale: 0), "scale", "*> 0*" },
        { "unknown proj_type", () => LowRank.GaLore(Params(), proj_type: (ProjectionType)42), "proj_type", "*Std, ReverseStd, Left, Right, Full*42*" },
        { "unknown conventions", () => LowRank.GaLore(Params(), conventions: (AdamConventions)7), "conventions", "*GaLoreReference, TorchOptim*" },
        { "Adafactor lr with relative_step", () => LowRank.GaLoreAdafactor([new LowRankParamGroup(Params())], lr: 0.01), "lr", "*0.01*relative_step*" },
        { "Adafactor without lr or relative_step", () => LowRank.GaLoreAdafactor([new LowRankParamGroup(Params())], relative_step: false), "lr", "*required*relative_step = false*" },
        { "Adafactor warmup_init without relative_step", () => LowRank.GaLoreAdafactor([new LowRankParamGroup(Params())], lr: 0.1, relative_step: false, warmup_init: true), "warmup_init", "*requires relative_step*" },
        { "Adafactor decay_rate >= 0", () => LowRank.GaLoreAdafactor([new LowRankParamGroup(Params())], decay_rate: 0.5), "decay_rate", "*< 0*0.5*" },
        { "Nesterov without momentum", () => new LowRankOptimizer([new LowRankParamGroup(Params())],
            Equivalence.AdamWEquivalenceTests.Options(FullSpace.Instance, new SgdConfig(0, 0, Nesterov: true))), "nesterov", "*momentum > 0*" },
        { "SMMF beta = 1", () => LowRank.Smmf(Params(), beta: 1.0), "beta", "*beta must be in [0, 1)*1*" },
        { "SMMF negative eps", () => LowRank.Smmf(Params(), eps: -1e-8), "eps", "*eps must be finite and >= 0*-1E-08*" },
        { "SMMF decay_rate > 0", () => LowRank.Smmf(Params(), decay_rate: 0.5), "decay_rate", "*decay_rate must be finite and <= 0*0.5*" },
        { "SMMF growth_rate > 1", () => LowRank.Smmf(Params(), growth_rate: 1.5), "growth_rate", "*growth_rate must be in [0, 1]*1.5*" },
        { "SMMF negative lr", () => LowRank.Smmf(Params(), lr: -0.01), "lr", "*lr must be finite and >= 0*-0.01*" },
        { "SMMF negative weight decay", () => LowRank.Smmf(Params(), weight_decay: -1), "weight_decay", "*>= 0*-1*" },
        { "SMMF unknown weight_decay_mode", () => LowRank.Smmf(Params(), weight_decay_mode: (SmmfWeightDecayMode)9), "weight_decay_mode", "*AdamW, Adam*9*" },
        { "SMMF unknown kernel", () => LowRank.Smmf(Params(), kernel: (KernelPreference)5), "kernel", "*Auto, Reference, Cpu*5*" },
        { "SMMF Cpu kernel with float64 state", () => LowRank.Smmf([new Parameter(randn(6, 4, dtype: ScalarType.Float64))], kernel: KernelPreference.Cpu),
            "kernel", "*kernel = Cpu needs float32 state on the CPU*[6, 4]*Float64*" },
        { "group lr negative", () => LowRank.GaLore([new LowRankParamGroup(Params(), new LowRankOptions { LearningRate = -1 })]), "lr", "*parameter group 0*-1*" },
        { "randomized oversampling < 0", () => LowRank.GaLore(Params(), projector: GaLoreProjector.RandomizedSvd, oversampling: -1), "oversampling", "*>= 0*-1*" },
        { "randomized power_iterations < 0", () => LowRank.GaLore(Params(), projector: GaLoreProjector.RandomizedSvd, power_iterations: -2), "power_iterations", "*>= 0*-2*" },
        { "oversampling with the exact SVD", () => LowRank.GaLore(Params(), oversampling: 4), "oversampling", "*4*RandomizedSvd*" },
        { "Adafactor power_iterations with the exact SVD", () => LowRank.GaLoreAdafactor([new LowRankParamGroup(Params())], power_iterations: 1), "power_iterations", "*1*RandomizedSvd*" },
        { "seed with the exact SVD", () => LowRank.GaLore(Params(), seed: 3), "seed", "*3*RandomizedSvd*" },
        { "unknown projector", () => LowRank.GaLore(Params(), projector: (GaLoreProjector)5), "projector", "*Svd, RandomizedSvd*5*" },
        { "DCT rank 0", () => LowRank.DctAdamW(Params(), rank: 0), "rank", "*>= 1*0*" },
        { "DCT update_proj_gap 0", () => LowRank.DctAdamW(Params(), update_proj_gap: 0), "update_proj_gap", "*>= 1*0*" },
        { "DCT ell_norm < 1", () => LowRank.DctAdamW(Params(), ell_norm: 0.5), "ell_norm", "*>= 1*0.5*" },
        { "DCT ell_norm NaN", () => LowRank.DctAdamW(Params(), ell_norm: double.NaN), "ell_norm", "*>= 1*NaN*" },
        { "DCT max_shape 0", () => LowRank.DctAdamW(Params(), max_shape: 0), "max_shape", "*>= 1*0*" },
        { "DCT unknown sim_type", () => LowRank.DctAdamW(Params(), sim_type: (DctTransformMethod)9), "sim_type", "*MatrixProduct, FastTransform*9*" },
        { "DCT full projection", () => LowRank.DctAdamW(Params(), proj_type: ProjectionType.Full), "proj_type", "*Std, ReverseStd, Left, Right*Full*" },
        { "DCT negative weight decay", () => LowRank.DctAdamW(Params(), weight_decay: -1), "weight_decay", "*>= 0*-1*" },
        { "OSD full projection", () => LowRank.OnlineSubspaceDescent(Params(), proj_type: ProjectionType.Full), "proj_type", "*Std, ReverseStd, Left, Right*Full*" },
        { "OSD negative p_weight_decay", () => LowRank.OnlineSubspaceDescent(Params(), p_weight_decay: -0.5), "p_weight_decay", "*>= 0*-0.5*" },
        { "OSD invalid basis optimizer", () => LowRank.OnlineSubspaceDescent(Params(), p_optimizer: new AdamConfig(Beta1: 1.5)), "beta1", "*basis optimizer*[0, 1)*1.5*" },
        { "OSD Adafactor relative step for P", () => LowRank.OnlineSubspaceDescent(Params(), p_optimizer: new AdafactorConfig()), "p_optimizer", "*relative_step*" },
        { "OSD update_proj_gap 0", () => LowRank.OnlineSubspaceDescent(Params(), update_proj_gap: 0), "update_proj_gap", "*>= 1*0*" },
        { "GaLore+ heads not dividing the rows", () => LowRank.GaLorePlus(TestProblems.Mlp(1), name => name == "fc1" ? AttentionHeads.QueryKeyValue(3) : null),
            "heads", "*heads = 3*divide the rows (20)*20×12*" },
        { "GaLore+ heads not dividing the columns", () => LowRank.GaLorePlus(TestProblems.Mlp(1), name => name == "fc2" ? AttentionHeads.Output(7) : null),
            "heads", "*heads = 7*divide the columns (20)*6×20*" },
        { "GaLore+ heads 0", () => LowRank.GaLorePlus([new LowRankParamGroup(Params(), new LowRankOptions { Projection = new GaLorePlusProjection(Heads: new AttentionHeads(0, HeadAxis.Rows)) })]),
            "heads", "*heads must be >= 1*0*" },
        { "GaLore+ residual_density > 1", () => LowRank.GaLorePlus([new LowRankParamGroup(Params())], residual_density: 1.5), "residual_density", "*[0, 1]*1.5*" },
        { "GaLore+ residual_density NaN", () => LowRank.GaLorePlus([new LowRankParamGroup(Params())], residual_density: double.NaN), "residual_density", "*[0, 1]*NaN*" },
        { "GaLore+ residual_warmup < 0", () => LowRank.GaLorePlus([new LowRankParamGroup(Params())], residual_warmup: -1), "residual_warmup", "*>= 0*-1*" },
        { "GaLore+ residual_scale 0", () => LowRank.GaLorePlus([new LowRankParamGroup(Params())], residual_scale: 0), "residual_scale", "*> 0*0*" },
        { "GaLore+ oversampling < 0", () => LowRank.GaLorePlus([new LowRankParamGroup(Params())], oversampling: -3), "oversampling", "*>= 0*-3*" },
        { "GaLore+ unknown cross_head", () => LowRank.GaLorePlus([new LowRankParamGroup(Params())], cross_head: (CrossHeadReading)4), "cross_head", "*SharedLongSide, PerHeadShortSide*4*" },
        { "GaLore+ residual with Adafactor", () => LowRank.GaLorePlus([new LowRankParamGroup(Params(), new LowRankOptions { Rule = new AdafactorConfig(RelativeStep: false) })], residual_density: 0.1),
            "residual_density", "*parameter group 0*residual_density = 0.1 needs the Adam rule*AdafactorConfig*" },
        { "group rank 0", () => LowRank.GaLore([new LowRankParamGroup(Params()), new LowRankParamGroup([new Parameter(randn(3, 3))], new LowRankOptions { Projection = new SvdProjection(Rank: 0) })]), "rank", "*parameter group 1*rank must be >= 1*" },
    };

    [Theory]
    [MemberData(nameof(InvalidArguments))]
    public void InvalidArgumentsThrowWithNameValueAndConstraint(string what, Action create, string parameter, string message)
    {
        using var scope = NewDisposeScope();
        create.Should().Throw<ArgumentException>(what).Where(e => e.ParamName == parameter, $"{what} names the argument").WithMessage(message);
    }

    [Fact]
    public void AParameterInTwoGroupsIsRejected()
    {
        using var scope = NewDisposeScope();
        var p = new Parameter(randn(5, 3));
        var act = () => LowRank.GaLore([new LowRankParamGroup([p]), new LowRankParamGroup([p])]);
        act.Should().Throw<ArgumentException>().WithMessage("*parameter group 1*[5, 3]*more than one group*");
    }

    [Fact]
    public void AForeignParamGroupIsRejected()
    {
        using var scope = NewDisposeScope();
        using var opt = LowRank.AdamW(Params());
        var act = () => opt.add_param_group(new AdamW.ParamGroup(Params()));
        act.Should().Throw<ArgumentException>().WithMessage("*LowRankParamGroup*ParamGroup*");
    }

    [Fact]
    public void LoadingAnotherOptimizersFileOrStateDictThrows()
    {
        using var scope = NewDisposeScope();
        var model = TestProblems.Mlp(1);
        using var adamw = optim.AdamW(model.parameters());
        using var ours = LowRank.AdamW(model.parameters());
        var path = Path.GetTempFileName();
        try
        {
            adamw.save_state_dict(path);
            var fromFile = () => ours.load_state_dict(path);
            fromFile.Should().Throw<InvalidDataException>().WithMessage("*'AdamW'*'LowRankOptimizer'*");
        }
        finally { File.Delete(path); }
        var fromDict = () => ours.load_state_dict(adamw.state_dict());
        fromDict.Should().Throw<ArgumentException>().WithMessage("*Options[0]*AdamW*LowRankOptions*");
    }

    [Fact]
    public void MismatchedShapesNameTheParameterAndChangeNothing()
    {
        using var scope = NewDisposeScope();
        var (x, y) = TestProblems.Data(1, output: 6);
        var source = TestProblems.Mlp(1, output: 7); // fc2 is 7×20 here, 6×20 in the target
        using var sourceOpt = MethodCatalog.Get("galore-std").Create(source);
        var (sx, sy) = TestProblems.Data(1, output: 7);
        TestProblems.LossAndBackward(source, sx, sy);
        sourceOpt.step();
        foreach (var g in sourceOpt.ParamGroups) g.LearningRate = 0.123; // would be visible if options were applied

        var target = TestProblems.Mlp(2);
        using var targetOpt = MethodCatalog.Get("galore-std").Create(target);
        TestProblems.LossAndBackward(target, x, y);
        targetOpt.step();
        var before = Checkpoints.Bytes(targetOpt);

        var path = Path.GetTempFileName();
        try
        {
            sourceOpt.save_state_dict(path);
            var act = () => targetOpt.load_state_dict(path);
            act.Should().Throw<InvalidDataException>().WithMessage("*parameter 1 (shape [6, 20]*[7, 20]*");
            // Through the base class's load path too: still atomic.
            var viaBase = () => ((OptimizerHelper)targetOpt).load_state_dict(path);
            viaBase.Should().Throw<InvalidDataException>();
        }
        finally { File.Delete(path); }
        var inMemory = () => targetOpt.load_state_dict(sourceOpt.state_dict());
        inMemory.Should().Throw<InvalidDataException>().WithMessage("*[6, 20]*");

        Checkpoints.Bytes(targetOpt).Should().Equal(before, "a failed load changes no state or option");
        targetOpt.ParamGroups.Should().OnlyContain(g => g.LearningRate == 0.01);
    }

    [Fact]
    public void TruncatedFilesAndWrongGroupCountsChangeNothing()
    {
        using var scope = NewDisposeScope();
        var model = TestProblems.Mlp(3);
        using var opt = MethodCatalog.Get("galore-std").Create(model);
        var (x, y) = TestProblems.Data(3);
        TestProblems.LossAndBackward(model, x, y);
        opt.step();
        var bytes = Checkpoints.Bytes(opt);

        var other = TestProblems.Mlp(4);
        using var otherOpt = MethodCatalog.Get("galore-std").Create(other);
        var before = Checkpoints.Bytes(otherOpt);
        foreach (var cut in new[] { bytes.Length - 7, bytes.Length / 2, 40 })
        {
            using var reader = new BinaryReader(new MemoryStream(bytes[..cut]));
            var act = () => otherOpt.load_state_dict(reader);
            act.Should().Throw<Exception>().Which.Should().Match<Exception>(e => e is EndOfStreamException || e is InvalidDataException);
            Checkpoints.Bytes(otherOpt).Should().Equal(before, $"a file cut at {cut} bytes changes nothing");
        }

        using var single = LowRank.GaLore(model.parameters(), rank: 2);
        var wrongGroups = () => single.load_state_dict(new BinaryReader(new MemoryStream(bytes)));
        wrongGroups.Should().Throw<InvalidDataException>().WithMessage("*2 parameter groups*this optimizer has 1*");
    }
}
