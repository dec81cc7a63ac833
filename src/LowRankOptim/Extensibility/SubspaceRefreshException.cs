namespace LowRankOptim;

/// <summary>A subspace refresh could not produce a basis (non-finite gradient, SVD failure, …).</summary>
public sealed class SubspaceRefreshException : Exception
{
    /// <summary>Creates the exception.</summary>
    public SubspaceRefreshException(string message, Exception? inner = null) : base(message, inner) { }
}
