using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>Root mean square, RMS(x) = ‖x‖₂ / √numel(x): Adafactor's update clipping and its <c>scale_parameter</c>.</summary>
internal static class Rms
{
    /// <summary>RMS(<paramref name="x"/>) as a 0-dim tensor of its dtype.</summary>
    public static Tensor Of(Tensor x)
    {
        using var root = Math.Sqrt(x.numel()).ToScalar();
        return x.norm().div_(root);
    }

    /// <summary>RMS of a parameter computed in float32, as a number (read only when a rule asks, through <see cref="RuleContext.ParameterRms"/>).</summary>
    public static double OfParameter(Tensor parameter)
    {
        using var scope = NewDisposeScope();
        return Of(parameter.to(ScalarType.Float32)).item<float>();
    }
}
