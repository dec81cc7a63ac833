
namespace LowRankOptim;

/// <summary>
/// A per-parameter piece of optimizer state (a subspace or an update rule) that owns its tensors.
/// </summary>
public interface IStatefulComponent : IDisposable
{
    /// <summary>Writes every tensor and number needed to resume exactly.</summary>
    void Save(StateWriter writer);

    /// <summary>
    /// Reads what <see cref="Save"/> wrote into this component, which is always freshly created by its
    /// config for the same parameter; throws <see cref="InvalidDataException"/> on any mismatch.
    /// </summary>
    void Load(StateReader reader);

    /// <summary>Exact bytes of the tensors this component holds now.</summary>
    long StateBytes { get; }

    /// <summary>Moves every tensor to <paramref name="device"/>.</summary>
    void MoveTo(TorchSharp.torch.Device device);
}
