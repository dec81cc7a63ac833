namespace LowRankOptim;

/// <summary>A subspace refresh could not produce a basis (non-finite gradient, SVD failure, …).</summary>
public sealed class SubspaceRefreshException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">Why the refresh failed.</param>
    /// <param name="inner">The exception that caused it, if any.</param>
    public SubspaceRefreshException(string message, Exception? inner = null) : base(message, inner) { }
}
