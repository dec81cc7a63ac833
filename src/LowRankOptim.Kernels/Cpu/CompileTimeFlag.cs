namespace LowRankOptim.Kernels;

/// <summary>
/// A compile-time flag for a kernel loop: the JIT compiles one instantiation per flag struct (a generic method's type
/// argument) with the flag folded, so that a mode costs no test inside the loop.
/// </summary>
internal interface IFlag
{
    static abstract bool Value { get; }
}

/// <summary>The flag set.</summary>
internal struct Yes : IFlag
{
    public static bool Value => true;
}

/// <summary>The flag clear.</summary>
internal struct No : IFlag
{
    public static bool Value => false;
}
