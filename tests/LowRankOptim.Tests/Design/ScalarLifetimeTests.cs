using System.Reflection;
using FluentAssertions;
using LowRankOptim.Kernels;
using TorchSharp;
using Xunit;

namespace LowRankOptim.Tests.Design;

/// <summary>
/// TorchSharp frees a <see cref="Scalar"/>'s native value in its finalizer, and its methods pass the handle to native
/// code without keeping the wrapper alive: a Scalar made by an implicit conversion (<c>t.mul_(0.9)</c>) is unreachable
/// during the native call, so a collection on another thread can free it while libtorch reads it (seen as
/// "Expected false to be true … toDouble" from <c>mul_</c> in a parallel test run). The packages therefore make every
/// Scalar explicitly and hold it in a local that a <c>using</c> disposes after the call. The IL of every method of
/// both assemblies is read: no call to the implicit conversion, and every <c>ToScalar()</c> result is stored in a local
/// (or a static field, which roots it).
/// </summary>
public sealed class ScalarLifetimeTests
{
    private static readonly MethodInfo[] Implicit = typeof(Scalar).GetMethods(BindingFlags.Public | BindingFlags.Static)
        .Where(m => m.Name == "op_Implicit").ToArray();

    public static TheoryData<string> Assemblies() => ["LowRankOptim", "LowRankOptim.Kernels"];

    [Theory]
    [MemberData(nameof(Assemblies))]
    public void EveryScalarIsHeldInALocalForItsCall(string name)
    {
        var assembly = name == "LowRankOptim" ? typeof(LowRankOptimizer).Assembly : typeof(KernelRegistry).Assembly;
        var offences = new List<string>();
        var madeExplicitly = 0;
        foreach (var type in assembly.GetTypes())
        {
            const BindingFlags all = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
            foreach (var method in type.GetMethods(all).Cast<MethodBase>().Concat(type.GetConstructors(all)))
            {
                var il = method.GetMethodBody()?.GetILAsByteArray();
                if (il is null) continue;
                for (var i = 0; i + 5 <= il.Length; i++)
                {
                    if (il[i] is not (0x28 or 0x6F)) continue; // call, callvirt
                    MethodBase? callee;
                    try { callee = method.Module.ResolveMethod(BitConverter.ToInt32(il, i + 1)); }
                    catch (Exception e) when (e is ArgumentException or BadImageFormatException) { continue; } // not a call's operand
                    if (callee is null) continue;
                    var where = $"{type.FullName}.{method.Name}";
                    if (callee.DeclaringType == typeof(Scalar) && callee.Name == "op_Implicit")
                        offences.Add($"{where}: an implicit conversion to Scalar");
                    else if (callee.Name == "ToScalar" && callee.DeclaringType == typeof(ScalarExtensionMethods))
                    {
                        madeExplicitly++;
                        var next = i + 5 < il.Length ? il[i + 5] : (byte)0;
                        // stloc.0-3, stloc.s, stloc; or stsfld: a static field roots it for the process.
                        var stored = next is >= 0x0A and <= 0x0D or 0x13 or 0x80 || (next == 0xFE && i + 6 < il.Length && il[i + 6] == 0x0E);
                        if (!stored) offences.Add($"{where}: a ToScalar() result passed on without a local");
                    }
                }
            }
        }
        Implicit.Should().NotBeEmpty();
        madeExplicitly.Should().BeGreaterThan(0, "the kernels and rules pass scalars to libtorch");
        string.Join("\n", offences.Distinct()).Should().BeEmpty($"every Scalar in {name} is made explicitly and held in a local (using var s = x.ToScalar())");
    }
}
