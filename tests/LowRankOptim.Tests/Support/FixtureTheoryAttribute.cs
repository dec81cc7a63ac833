using Xunit;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace LowRankOptim.Tests.Support;

/// <summary>
/// A theory over fixture files whose rows can be skipped one by one: a row whose first argument is a
/// fixture of an algorithm listed in <see cref="FixtureCatalog.NotImplemented"/> becomes a skipped test
/// with the reason "not implemented yet" (xunit 2 has no per-row skip of its own).
/// </summary>
[XunitTestCaseDiscoverer("LowRankOptim.Tests.Support.FixtureTheoryDiscoverer", "LowRankOptim.Tests")]
[AttributeUsage(AttributeTargets.Method)]
public sealed class FixtureTheoryAttribute : TheoryAttribute;

public sealed class FixtureTheoryDiscoverer(IMessageSink diagnosticMessageSink) : TheoryDiscoverer(diagnosticMessageSink)
{
    protected override IEnumerable<IXunitTestCase> CreateTestCasesForDataRow(
        ITestFrameworkDiscoveryOptions discoveryOptions, ITestMethod testMethod, IAttributeInfo theoryAttribute, object[] dataRow)
    {
        if (dataRow.Length > 1 && dataRow[1] is string algorithm && FixtureCatalog.NotImplemented.Contains(algorithm))
            return CreateTestCasesForSkippedDataRow(discoveryOptions, testMethod, theoryAttribute, dataRow, FixtureCatalog.NotImplementedReason);
        return base.CreateTestCasesForDataRow(discoveryOptions, testMethod, theoryAttribute, dataRow);
    }
}
