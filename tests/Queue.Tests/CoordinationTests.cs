using Queue.Adapters.Embedded;
using Queue.Contracts.Ports;

namespace Queue.Tests;

public sealed class EmbeddedCoordinationTests
{
    [Fact]
    public async Task OneCandidateLeadsAndTheNextLeadsAfterItResigns()
    {
        var store = new InMemoryKeyValueStore();
        var election = new EmbeddedLeaderElection(store);
        var first = await election.CampaignAsync("one", CancellationToken.None);
        var second = election.CampaignAsync("two", CancellationToken.None);
        await Task.Delay(200);
        Assert.False(second.IsCompleted);
        Assert.Equal("one", await election.GetLeaderAsync(CancellationToken.None));
        await first.ResignAsync(CancellationToken.None);
        Assert.True(first.Lost.IsCancellationRequested);
        var next = await second.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal("two", next.CandidateId);
        Assert.True(next.Epoch > first.Epoch);
    }

    [Fact]
    public async Task DeposedLeaderCannotWriteJobState()
    {
        var store = new InMemoryKeyValueStore();
        var election = new EmbeddedLeaderElection(store);
        var old = await election.CampaignAsync("old", CancellationToken.None);
        Assert.True(await store.TransactAsync([old.Fence], [new KvWrite("/queue/jobs/j/status", [1])], CancellationToken.None));

        await election.ExpireAsync(old, CancellationToken.None);
        var current = await election.CampaignAsync("new", CancellationToken.None);

        Assert.True(old.Lost.IsCancellationRequested);
        Assert.False(await store.TransactAsync([old.Fence], [new KvWrite("/queue/jobs/j/status", [2])], CancellationToken.None));
        Assert.True(await store.TransactAsync([current.Fence], [new KvWrite("/queue/jobs/j/status", [3])], CancellationToken.None));
        Assert.Equal([3], (await store.GetAsync("/queue/jobs/j/status", CancellationToken.None))!.Value);
    }

    [Fact]
    public async Task TransactionsCompareRevisionsAndApplyAllOrNothing()
    {
        var store = new InMemoryKeyValueStore();
        Assert.True(await store.TransactAsync([KvCompare.Absent("a")], [new KvWrite("a", [1]), new KvWrite("b", [1])], CancellationToken.None));
        Assert.False(await store.TransactAsync([KvCompare.Absent("a")], [new KvWrite("c", [1])], CancellationToken.None));
        Assert.Null(await store.GetAsync("c", CancellationToken.None));
        var a = (await store.GetAsync("a", CancellationToken.None))!;
        Assert.True(await store.TransactAsync([KvCompare.Unchanged(a)], [new KvWrite("a", [2]), KvWrite.Delete("b")], CancellationToken.None));
        Assert.False(await store.TransactAsync([KvCompare.Unchanged(a)], [new KvWrite("a", [3])], CancellationToken.None));
        Assert.Equal(["a"], (await store.ListAsync("", CancellationToken.None)).Select(e => e.Key));
    }
}
