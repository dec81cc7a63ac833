using Xunit;

namespace LowRankOptim.Tests.Support;

/// <summary>Tests that read process-wide counters (live tensors) run alone.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class SerialCollection
{
    public const string Name = "serial";
}
