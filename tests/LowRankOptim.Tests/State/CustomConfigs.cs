using static TorchSharp.torch;

namespace LowRankOptim.Tests.State;

/// <summary>
/// A user-written rule config: SGD with momentum whose step is scaled by <see cref="Factor"/>. It keeps the momentum
/// buffer of the library's SGD rule, so it has state to save. Registered by <see cref="ConfigRegistryTests"/>.
/// </summary>
public sealed record ScaledSgdConfig(double Momentum = 0.9, double Factor = 0.5) : IUpdateRuleConfig
{
    private SgdConfig Sgd => new(Momentum);

    public ScalarType WorkingType(ScalarType gradientType) => gradientType;

    public IUpdateRule Create(long[] shape, ScalarType dtype, Device device) => new ScaledSgdRule(Sgd.Create(shape, dtype, device));

    public StateDeclaration DeclareState(long[] shape, ScalarType dtype) => Sgd.DeclareState(shape, dtype);

    public void Validate(string where)
    {
        Sgd.Validate(where);
        if (!(Factor > 0)) throw new ArgumentOutOfRangeException("factor", Factor, $"{where}: factor must be > 0.");
    }

    public void Save(StateWriter writer)
    {
        writer.Double("momentum", Momentum);
        writer.Double("factor", Factor);
    }

    public static ScaledSgdConfig Read(StateReader reader) => new(reader.Double("momentum"), reader.Double("factor"));

    private sealed class ScaledSgdRule(IUpdateRule sgd) : IUpdateRule
    {
        public StateSlots State => sgd.State;

        public RuleUpdate Compute(Tensor gradient, in RuleContext context)
        {
            var config = (ScaledSgdConfig)context.Config;
            var update = sgd.Compute(gradient, context with { Config = config.Sgd });
            return update with { Coefficient = update.Coefficient * config.Factor };
        }
    }
}

/// <summary>A user-written projection (GaLore's SVD projection with two options); registered under an explicit kind.</summary>
public sealed record CustomSvdProjection(int Rank = 2, int UpdateProjGap = 3) : IProjectionConfig
{
    public const string Kind = "tests.CustomSvdProjection";

    private SvdProjection Svd => new(Rank, UpdateProjGap, Scale: 0.5);

    public MatrixShape? MatrixViewOf(long[] shape) => Svd.MatrixViewOf(shape);

    public ISubspace Create(MatrixShape matrix, ScalarType dtype, Device device) => Svd.Create(matrix, dtype, device);

    public long[] ProjectedShape(MatrixShape matrix) => Svd.ProjectedShape(matrix);

    public StateDeclaration DeclareState(MatrixShape matrix, ScalarType dtype) => Svd.DeclareState(matrix, dtype);

    public void Validate(string where) => Svd.Validate(where);

    public void Save(StateWriter writer)
    {
        writer.Long("rank", Rank);
        writer.Long("update_proj_gap", UpdateProjGap);
    }

    public static CustomSvdProjection Read(StateReader reader) => new((int)reader.Long("rank"), (int)reader.Long("update_proj_gap"));
}

/// <summary>A rule config that is never registered: plain SGD.</summary>
public sealed record UnregisteredRule(double Momentum = 0) : IUpdateRuleConfig
{
    private SgdConfig Sgd => new(Momentum);

    public ScalarType WorkingType(ScalarType gradientType) => gradientType;

    public IUpdateRule Create(long[] shape, ScalarType dtype, Device device) => Sgd.Create(shape, dtype, device);

    public StateDeclaration DeclareState(long[] shape, ScalarType dtype) => Sgd.DeclareState(shape, dtype);

    public void Validate(string where) => Sgd.Validate(where);

    public void Save(StateWriter writer) => writer.Double("momentum", Momentum);
}

/// <summary>A projection config that is never registered: GaLore's SVD projection.</summary>
public sealed record UnregisteredProjection(int Rank = 2) : IProjectionConfig
{
    private SvdProjection Svd => new(Rank);

    public MatrixShape? MatrixViewOf(long[] shape) => Svd.MatrixViewOf(shape);

    public ISubspace Create(MatrixShape matrix, ScalarType dtype, Device device) => Svd.Create(matrix, dtype, device);

    public long[] ProjectedShape(MatrixShape matrix) => Svd.ProjectedShape(matrix);

    public StateDeclaration DeclareState(MatrixShape matrix, ScalarType dtype) => Svd.DeclareState(matrix, dtype);

    public void Validate(string where) => Svd.Validate(where);

    public void Save(StateWriter writer) => writer.Long("rank", Rank);
}
