using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using TorchSharp;

namespace LowRankOptim.Kernels;

/// <summary>
/// The one place where the kernels turn a tensor into a raw pointer. It checks what the pointer arithmetic
/// relies on: a CPU tensor, of the expected dtype and element count, contiguous, and small enough for
/// TorchSharp's byte span (under 2 GiB). The pointer comes from <c>Tensor.bytes</c>, a zero-copy span over
/// the native buffer that already starts at the tensor's storage offset (a slice's first element), and
/// creates no tensor wrapper. The memory is native, so it never moves; the caller keeps the tensor alive
/// (and does not resize it) while the pointer is in use.
/// </summary>
internal static unsafe class RawTensor
{
    /// <summary>The largest byte size <c>Tensor.bytes</c> can span.</summary>
    public const long MaxBytes = int.MaxValue;

    /// <summary>
    /// A pointer to the first element of <paramref name="tensor"/>, which must be a contiguous CPU tensor of
    /// <paramref name="dtype"/> with <paramref name="count"/> elements.
    /// </summary>
    /// <exception cref="ArgumentException">The tensor is on another device, of another dtype or size, not contiguous, or too large.</exception>
    public static T* Pointer<T>(torch.Tensor tensor, torch.ScalarType dtype, long count, string name) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(tensor, name);
        if (tensor.device_type != DeviceType.CPU)
            throw new ArgumentException($"{name} is on {tensor.device}; the CPU kernel needs a CPU tensor.", name);
        if (tensor.dtype != dtype)
            throw new ArgumentException($"{name} has dtype {tensor.dtype}; the CPU kernel needs {dtype}.", name);
        if (sizeof(T) != tensor.element_size())
            throw new ArgumentException($"{name}: element size {tensor.element_size()} does not match {typeof(T).Name} ({sizeof(T)} bytes).", name);
        if (tensor.numel() != count)
            throw new ArgumentException($"{name} has {tensor.numel()} elements; the CPU kernel expects {count}.", name);
        if (!tensor.is_contiguous())
            throw new ArgumentException($"{name} is not contiguous; the CPU kernel needs a contiguous tensor.", name);
        if (count * sizeof(T) >= MaxBytes)
            throw new ArgumentException($"{name} has {count * sizeof(T)} bytes; the CPU kernel handles tensors under {MaxBytes} bytes.", name);
        if (count == 0) return null;
        var span = tensor.bytes; // starts at the storage offset
        return (T*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(span));
    }

    /// <summary>
    /// Checks <paramref name="tensor"/> for the pointer functions and says what is wrong, or returns null:
    /// the same checks as <see cref="Pointer{T}"/> without taking a pointer.
    /// </summary>
    public static string? Problem(torch.Tensor? tensor, DeviceType device, string name)
    {
        if (tensor is null) return null;
        if (tensor.device_type != device) return $"{name} is on {tensor.device}; the kernel needs a {device} tensor.";
        if (!tensor.is_contiguous()) return $"{name} is not contiguous (strides [{string.Join(", ", tensor.stride())}]); the kernel needs a contiguous tensor.";
        if (device == DeviceType.CPU && tensor.numel() * tensor.element_size() >= MaxBytes)
            return $"{name} has {tensor.numel() * tensor.element_size()} bytes; the CPU kernel handles tensors under {MaxBytes} bytes.";
        return null;
    }

    /// <summary>
    /// The device address of the first element of <paramref name="tensor"/>, a contiguous CUDA tensor of
    /// <paramref name="dtype"/> with <paramref name="count"/> elements: libtorch's <c>data_ptr()</c> through
    /// LibTorchSharp's exported <c>THSTensor_data</c>, which includes the storage offset. The caller keeps the
    /// tensor alive while a kernel that uses the address may run.
    /// </summary>
    /// <exception cref="ArgumentException">The tensor is not on a CUDA device, of another dtype or size, or not contiguous.</exception>
    public static IntPtr DevicePointer(torch.Tensor tensor, torch.ScalarType dtype, long count, string name)
    {
        ArgumentNullException.ThrowIfNull(tensor, name);
        if (tensor.device_type != DeviceType.CUDA)
            throw new ArgumentException($"{name} is on {tensor.device}; the CUDA kernel needs a CUDA tensor.", name);
        if (tensor.dtype != dtype)
            throw new ArgumentException($"{name} has dtype {tensor.dtype}; the CUDA kernel needs {dtype}.", name);
        if (tensor.numel() != count)
            throw new ArgumentException($"{name} has {tensor.numel()} elements; the CUDA kernel expects {count}.", name);
        if (!tensor.is_contiguous())
            throw new ArgumentException($"{name} is not contiguous; the CUDA kernel needs a contiguous tensor.", name);
        if (count == 0) return IntPtr.Zero;
        var address = THSTensor_data(tensor.Handle);
        GC.KeepAlive(tensor);
        if (address == IntPtr.Zero) throw new ArgumentException($"{name} has no data pointer.", name);
        return address;
    }

    [DllImport("LibTorchSharp")]
    private static extern IntPtr THSTensor_data(IntPtr tensorHandle);
}
