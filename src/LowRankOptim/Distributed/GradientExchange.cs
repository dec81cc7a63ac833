using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// What a data-parallel step must sum over ranks for one parameter at one step, declared by its subspace
/// (<see cref="ISubspace.Exchange"/>) so the step engine stays generic. Either the whole gradient G, summed
/// before the refresh phase (a refresh must see the same G on every rank, and some methods read G itself), or
/// only the projected gradient R = Proj(G) (exact: the projection is linear and the basis is the same on every
/// rank), optionally with a few entries of G that the apply phase reads.
/// </summary>
public readonly record struct GradientExchange
{
    private GradientExchange(bool full, Tensor? entries) => (IsFull, GradientEntries) = (full, entries);

    /// <summary>The whole gradient matrix is summed before the refresh; R is then computed from the sum.</summary>
    public static GradientExchange Full => new(true, null);

    /// <summary>
    /// Only R is summed (after the projection). <paramref name="gradientEntries"/>, if given, are flat int64 indices
    /// into the gradient matrix whose entries are summed too and written back into G before the apply phase
    /// (GaLore+'s sparse residual reads G on its k kept entries only); every other entry of G is then this
    /// rank's own and must not be read.
    /// </summary>
    /// <param name="gradientEntries">Flat indices of G whose entries are summed too (null: none).</param>
    public static GradientExchange Projected(Tensor? gradientEntries = null) => new(false, gradientEntries);

    /// <summary>True when the whole gradient is summed.</summary>
    public bool IsFull { get; }

    /// <summary>Flat int64 indices of gradient entries summed along with R (projected exchange only), or null.</summary>
    public Tensor? GradientEntries { get; }
}
