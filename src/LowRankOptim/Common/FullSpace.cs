using TorchSharp;

namespace LowRankOptim;

/// <summary>No projection: the group's parameters are trained in the full space by the update rule.</summary>
public sealed class FullSpace : IProjectionConfig
{
    /// <summary>The single instance.</summary>
    public static FullSpace Instance { get; } = new();

    /// <summary>No saved fields: reading gives <see cref="Instance"/>.</summary>
    internal static readonly ConfigSchema<FullSpace> Schema = new(Instance);

    private FullSpace() { }

    /// <inheritdoc />
    public MatrixShape? MatrixViewOf(long[] shape) => null;

    /// <inheritdoc />
    public ISubspace Create(MatrixShape matrix, torch.ScalarType dtype, torch.Device device) =>
        throw new InvalidOperationException("FullSpace creates no subspace.");

    /// <inheritdoc />
    public long[] ProjectedShape(MatrixShape matrix) => matrix.ToArray();

    /// <inheritdoc />
    public StateDeclaration DeclareState(MatrixShape matrix, torch.ScalarType dtype) => new();

    /// <inheritdoc />
    public void Validate(string where) { }

    /// <inheritdoc />
    public void Save(StateWriter writer) { }

    /// <inheritdoc />
    public override string ToString() => "FullSpace";
}
