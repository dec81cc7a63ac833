using TorchSharp;

namespace LowRankOptim;

/// <summary>
/// An immutable description of how a parameter group's gradients are projected. It lives in the
/// group's options and creates one <see cref="ISubspace"/> per parameter it applies to.
/// </summary>
public interface IProjectionConfig
{
    /// <summary>
    /// The matrix view of a parameter of <paramref name="shape"/>, or null when this projection does not
    /// apply to it and the parameter is trained in the full space (1-D tensors, for instance).
    /// </summary>
    /// <param name="shape">The parameter's shape.</param>
    MatrixShape? MatrixViewOf(long[] shape);

    /// <summary>Creates the per-parameter subspace for a gradient matrix of <paramref name="matrix"/> shape.</summary>
    /// <param name="matrix">The parameter viewed as a matrix (from <see cref="MatrixViewOf"/>).</param>
    /// <param name="dtype">The dtype the projected gradient and moments use.</param>
    /// <param name="device">The parameter's device.</param>
    ISubspace Create(MatrixShape matrix, torch.ScalarType dtype, torch.Device device);

    /// <summary>The projected gradient's shape for a <paramref name="matrix"/>, computed without allocating.</summary>
    /// <param name="matrix">The parameter viewed as a matrix.</param>
    long[] ProjectedShape(MatrixShape matrix);

    /// <summary>
    /// The state of the subspace of a <paramref name="matrix"/>: the subspace builds its <see cref="StateSlots"/>
    /// from it and the planner reads it (no allocation).
    /// </summary>
    /// <param name="matrix">The parameter viewed as a matrix.</param>
    /// <param name="dtype">The working dtype of the projected gradient and the basis.</param>
    StateDeclaration DeclareState(MatrixShape matrix, torch.ScalarType dtype);

    /// <summary>Throws <see cref="ArgumentException"/> naming the option, its value and the constraint.</summary>
    /// <param name="where">Where the config is used, e.g. "parameter group 1", for the message.</param>
    void Validate(string where);

    /// <summary>Writes the config's math values (its kind is written by the caller); never execution policy.</summary>
    /// <param name="writer">Where the entries go.</param>
    void Save(StateWriter writer);

    /// <summary>
    /// This config (as read from a checkpoint) with the execution policy (kernel choice) of
    /// <paramref name="current"/>, the config in use: a load restores the math, never the policy.
    /// </summary>
    /// <param name="current">The config in use, whose execution policy is kept.</param>
    IProjectionConfig WithExecutionPolicyOf(IProjectionConfig current) => this;
}
