using TorchSharp;

namespace LowRankOptim;

/// <summary>
/// Fixes the sign of singular vectors, which an SVD defines only up to ±1: each vector is flipped so that
/// its entry of largest magnitude is positive (the lowest index decides ties). With this rule CPU and GPU,
/// and different LAPACK builds, produce the same basis, and moments kept across a refresh meet the same signs.
/// </summary>
internal static class SignCanonicalization
{
    /// <summary>Flips the columns of <paramref name="vectors"/> (p×r) in place.</summary>
    public static void Columns(torch.Tensor vectors) => Apply(vectors, dim: 0);

    /// <summary>Flips the rows of <paramref name="vectors"/> (r×q) in place.</summary>
    public static void Rows(torch.Tensor vectors) => Apply(vectors, dim: 1);

    private static void Apply(torch.Tensor vectors, long dim)
    {
        using var scope = torch.NewDisposeScope();
        // argmax returns the first maximal index, which is the documented tie rule.
        var index = vectors.abs().argmax(dim, keepdim: true);
        var sign = vectors.gather(dim, index).sign();
        using var zero = 0.ToScalar();
        using var one = 1.ToScalar();
        sign.masked_fill_(sign.eq(zero), one); // an all-zero vector keeps its (zero) values
        vectors.mul_(sign);
    }
}
