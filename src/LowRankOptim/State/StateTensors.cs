using TorchSharp;

namespace LowRankOptim;

/// <summary>
/// Creates and replaces long-lived state tensors. Every state tensor goes through here so that none is
/// left in a caller's dispose scope (which would free it at the scope's end).
/// </summary>
internal static class StateTensors
{
    /// <summary>A zero tensor detached from every dispose scope.</summary>
    public static torch.Tensor Zeros(long[] shape, torch.ScalarType dtype, torch.Device device) =>
        torch.zeros(shape, dtype: dtype, device: device).DetachFromDisposeScope();

    /// <summary>Detaches <paramref name="value"/>, disposes the old tensor in <paramref name="slot"/> and stores the new one.</summary>
    public static void Replace(ref torch.Tensor? slot, torch.Tensor value)
    {
        var old = slot;
        slot = value.DetachFromDisposeScope();
        if (!ReferenceEquals(old, slot)) old?.Dispose();
    }

    /// <summary>Moves the tensor in <paramref name="slot"/> to <paramref name="device"/>, disposing the old one.</summary>
    public static void MoveTo(ref torch.Tensor? slot, torch.Device device)
    {
        if (slot is null || slot.device == device) return;
        Replace(ref slot, slot.to(device));
    }

    /// <summary>
    /// Loads entry <paramref name="name"/> into a freshly created component's <paramref name="slot"/>: the saved
    /// entry must be present exactly when the slot exists, with the slot's shape, dtype and device.
    /// </summary>
    public static void Load(StateReader reader, string name, ref torch.Tensor? slot)
    {
        if (slot is null) reader.AbsentTensor(name);
        else Replace(ref slot, reader.RequiredTensor(name, slot.shape, slot.dtype, slot.device));
    }

    /// <summary>numel × element size, 0 for null.</summary>
    public static long Bytes(torch.Tensor? t) => t is null ? 0 : t.numel() * t.element_size();
}
