namespace LowRankOptim;

/// <summary>How GaLore's projector estimates the top-r singular subspace at a refresh.</summary>
public enum GaLoreProjector
{
    /// <summary>The exact thin SVD (<see cref="SvdProjection"/>), as galore_torch.</summary>
    Svd,
    /// <summary>Randomized subspace iteration (<see cref="RandomizedSvdProjection"/>), as GaLore+ and GaLore 2.</summary>
    RandomizedSvd,
}
