using Queue.Contracts.Jobs;

namespace Queue.Tests;

public sealed class ContractTests
{
    [Fact]
    public void EveryStoredAndWireRecordReadsBackAsItWasWritten()
    {
        // The start-up warm-up writes and reads one of each record with every optional part filled,
        // and throws when a second write differs from the first.
        ContractsWarmup.Run();
    }
}
