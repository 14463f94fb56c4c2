using System.Globalization;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Queue.Adapters.Embedded;
using Queue.Adapters.Etcd;
using Queue.Contracts.Ports;
using Queue.Tests.Infrastructure;

namespace Queue.Tests;

/// <summary>The behaviour every coordination adapter must show: fenced transactions and leader election.</summary>
public abstract class CoordinationConformance
{
    protected abstract IKeyValueStore Store { get; }

    protected abstract ILeaderElection Election { get; }

    /// <summary>Ends a leadership the way an expired lease would.</summary>
    protected abstract Task ExpireAsync(ILeadership leadership);

    /// <summary>A key prefix no other test uses.</summary>
    protected string Scope { get; } = "/test/" + Guid.NewGuid().ToString("N") + "/";

    [Fact]
    public async Task OneCandidateLeadsAndTheNextLeadsAfterItResigns()
    {
        var first = await Election.CampaignAsync("one", CancellationToken.None);
        using var cancel = new CancellationTokenSource();
        var second = Election.CampaignAsync("two", cancel.Token);
        await Task.Delay(500);
        Assert.False(second.IsCompleted);
        Assert.Equal("one", await Election.GetLeaderAsync(CancellationToken.None));
        await first.ResignAsync(CancellationToken.None);
        Assert.True(first.Lost.IsCancellationRequested);
        var next = await second.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal("two", next.CandidateId);
        Assert.True(next.Epoch > first.Epoch);
        Assert.Equal("two", await Election.GetLeaderAsync(CancellationToken.None));
        await next.DisposeAsync();
        await first.DisposeAsync();
    }

    [Fact]
    public async Task DeposedLeaderCannotWriteJobState()
    {
        var key = Scope + "jobs/j/status";
        var old = await Election.CampaignAsync("old", CancellationToken.None);
        Assert.True(await Store.TransactAsync([old.Fence], [new KvWrite(key, [1])], CancellationToken.None));

        await ExpireAsync(old);
        var current = await Election.CampaignAsync("new", CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(15));

        await WaitForAsync(() => old.Lost.IsCancellationRequested, TimeSpan.FromSeconds(10));
        Assert.False(await Store.TransactAsync([old.Fence], [new KvWrite(key, [2])], CancellationToken.None));
        Assert.True(await Store.TransactAsync([current.Fence], [new KvWrite(key, [3])], CancellationToken.None));
        Assert.Equal([3], (await Store.GetAsync(key, CancellationToken.None))!.Value);
        await current.DisposeAsync();
        await old.DisposeAsync();
    }

    [Fact]
    public async Task TransactionsCompareRevisionsAndApplyAllOrNothing()
    {
        string a = Scope + "a", b = Scope + "b", c = Scope + "c";
        Assert.True(await Store.TransactAsync([KvCompare.Absent(a)], [new KvWrite(a, [1]), new KvWrite(b, [1])], CancellationToken.None));
        Assert.False(await Store.TransactAsync([KvCompare.Absent(a)], [new KvWrite(c, [1])], CancellationToken.None));
        Assert.Null(await Store.GetAsync(c, CancellationToken.None));
        var entry = (await Store.GetAsync(a, CancellationToken.None))!;
        Assert.True(await Store.TransactAsync([KvCompare.Unchanged(entry)], [new KvWrite(a, [2]), KvWrite.Delete(b)], CancellationToken.None));
        Assert.False(await Store.TransactAsync([KvCompare.Unchanged(entry)], [new KvWrite(a, [3])], CancellationToken.None));
        Assert.Equal([a], (await Store.ListAsync(Scope, CancellationToken.None)).Select(e => e.Key));
    }

    [Fact]
    public async Task ListingReturnsEveryKeyUnderAPrefixInOrder()
    {
        var writes = Enumerable.Range(0, 1234).Select(i => new KvWrite($"{Scope}k/{i:D5}", [(byte)(i % 256)])).ToList();
        for (var i = 0; i < writes.Count; i += 100)
        {
            Assert.True(await Store.TransactAsync([], writes.GetRange(i, Math.Min(100, writes.Count - i)), CancellationToken.None));
        }
        await Store.TransactAsync([], [new KvWrite(Scope + "kz", [1])], CancellationToken.None);
        var listed = await Store.ListAsync(Scope + "k/", CancellationToken.None);
        Assert.Equal(writes.Select(w => w.Key), listed.Select(e => e.Key));
    }

    [Fact]
    public async Task CompactingKeepsTheLatestValuesAndTheRevisionMovesOn()
    {
        var key = Scope + "compacted";
        for (byte i = 1; i <= 3; i++)
        {
            Assert.True(await Store.TransactAsync([], [new KvWrite(key, [i])], CancellationToken.None));
        }
        var revision = await Store.RevisionAsync(CancellationToken.None);
        Assert.Equal(revision, (await Store.GetAsync(key, CancellationToken.None))!.ModRevision);
        await Store.CompactAsync(revision, CancellationToken.None);
        await Store.CompactAsync(revision, CancellationToken.None);
        await Store.CompactAsync(revision - 1, CancellationToken.None);
        Assert.Equal([3], (await Store.GetAsync(key, CancellationToken.None))!.Value);
        Assert.True(await Store.TransactAsync([], [new KvWrite(key, [4])], CancellationToken.None));
        Assert.True(await Store.RevisionAsync(CancellationToken.None) > revision);
    }

    protected static async Task WaitForAsync(Func<bool> condition, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "Timed out waiting for a condition.");
            await Task.Delay(50);
        }
    }
}

public sealed class EmbeddedCoordinationTests : CoordinationConformance
{
    private readonly EmbeddedKeyValueStore store = new();
    private readonly EmbeddedLeaderElection election;

    public EmbeddedCoordinationTests() => election = new EmbeddedLeaderElection(store);

    protected override IKeyValueStore Store => store;

    protected override ILeaderElection Election => election;

    protected override Task ExpireAsync(ILeadership leadership) => election.ExpireAsync(leadership, CancellationToken.None);
}

/// <summary>One real etcd for the etcd adapter's tests.</summary>
public sealed class EtcdFixture : IAsyncLifetime
{
    public EtcdServer Server { get; private set; } = null!;

    public async Task InitializeAsync() => Server = await EtcdServer.StartAsync();

    public async Task DisposeAsync() => await Server.DisposeAsync();

    public EtcdConnection Client(string? endpoints = null, TimeSpan? leaseTtl = null, TimeSpan? retryTimeout = null) =>
        new(Options.Create(new EtcdOptions
        {
            Endpoints = endpoints ?? Server.Endpoints,
            LeaseTtl = leaseTtl ?? TimeSpan.FromSeconds(2),
            RetryTimeout = retryTimeout ?? TimeSpan.FromSeconds(10),
            CampaignPollInterval = TimeSpan.FromMilliseconds(50),
        }), NullLogger<EtcdConnection>.Instance);
}

[Collection("etcd")]
public sealed class EtcdCoordinationTests : CoordinationConformance, IDisposable
{
    private readonly EtcdConnection client;
    private readonly EtcdKeyValueStore store;
    private readonly EtcdLeaderElection election;

    public EtcdCoordinationTests(EtcdFixture etcd)
    {
        client = etcd.Client();
        store = new EtcdKeyValueStore(client);
        election = new EtcdLeaderElection(client, NullLogger<EtcdLeaderElection>.Instance);
    }

    protected override IKeyValueStore Store => store;

    protected override ILeaderElection Election => election;

    /// <summary>Revokes the leader's lease from outside, as its expiry during a pause would.</summary>
    protected override Task ExpireAsync(ILeadership leadership) =>
        client.RevokeLeaseAsync(long.Parse(leadership.Fence.Key[EtcdLeaderElection.Prefix.Length..], NumberStyles.HexNumber, CultureInfo.InvariantCulture), CancellationToken.None);

    public void Dispose() => client.Dispose();

    [Fact]
    public async Task WatchSeesEveryChangeOnceAcrossTheLossOfItsMember()
    {
        await using var cluster = await EtcdServer.StartAsync(memberCount: 3);
        var members = cluster.MemberUrls;
        using var watcher = new EtcdConnection(Options.Create(new EtcdOptions { Endpoints = cluster.Endpoints }), NullLogger<EtcdConnection>.Instance);
        using var writer = new EtcdConnection(Options.Create(new EtcdOptions { Endpoints = $"{members[1]},{members[2]}" }), NullLogger<EtcdConnection>.Instance);
        var store = new EtcdKeyValueStore(writer);
        var start = (await store.TransactAsync([], [new KvWrite("/watched/start", [0])], CancellationToken.None), await store.GetAsync("/watched/start", CancellationToken.None)).Item2!.ModRevision;

        var seen = new List<KvChange>();
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var watch = Task.Run(async () =>
        {
            await foreach (var change in new EtcdKeyValueStore(watcher).WatchAsync("/watched/k", start, stop.Token))
            {
                lock (seen)
                {
                    seen.Add(change);
                    if (seen.Count == 11)
                    {
                        return;
                    }
                }
            }
        });
        for (var i = 0; i < 5; i++)
        {
            await store.TransactAsync([], [new KvWrite($"/watched/k{i}", [(byte)i])], CancellationToken.None);
        }
        await WaitForAsync(() => { lock (seen) { return seen.Count == 5; } }, TimeSpan.FromSeconds(10));

        cluster.KillMember(0); // the member the watch streams from
        for (var i = 5; i < 10; i++)
        {
            await store.TransactAsync([], [new KvWrite($"/watched/k{i}", [(byte)i])], CancellationToken.None);
        }
        await store.TransactAsync([], [KvWrite.Delete("/watched/k0")], CancellationToken.None);
        await watch.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(Enumerable.Range(0, 10).Select(i => $"/watched/k{i}").Append("/watched/k0"), seen.Select(c => c.Key));
        Assert.Null(seen[^1].Value);
        Assert.Equal(seen.Select(c => c.Revision).Order(), seen.Select(c => c.Revision));
        Assert.Equal(seen.Count, seen.Select(c => c.Revision).Distinct().Count());
    }

    /// <summary>Compaction drops etcd's history: a read or a watch from before it fails; from after it, both work.</summary>
    [Fact]
    public async Task CompactionDropsTheHistoryBeforeItsRevision()
    {
        var key = Scope + "history";
        await store.TransactAsync([], [new KvWrite(key, [1])], CancellationToken.None);
        var old = await store.RevisionAsync(CancellationToken.None);
        await store.TransactAsync([], [new KvWrite(key, [2])], CancellationToken.None);
        var now = await store.RevisionAsync(CancellationToken.None);
        var past = new Etcdserverpb.RangeRequest { Key = Google.Protobuf.ByteString.CopyFromUtf8(key), Revision = old };
        Assert.Equal([1], (await client.RangeAsync(past, CancellationToken.None)).Kvs[0].Value.ToByteArray());
        await store.CompactAsync(now, CancellationToken.None);
        var error = await Assert.ThrowsAsync<EtcdException>(() => client.RangeAsync(past, CancellationToken.None));
        Assert.Equal(Grpc.Core.StatusCode.OutOfRange, error.Code);
        await Assert.ThrowsAsync<EtcdException>(async () =>
        {
            await foreach (var change in store.WatchAsync(Scope, old, CancellationToken.None))
            {
            }
        });
        Assert.Equal([2], (await store.GetAsync(key, CancellationToken.None))!.Value);
    }

    [Fact]
    public async Task UnreachableEtcdGivesAClearError()
    {
        using var dead = new EtcdConnection(Options.Create(new EtcdOptions
        {
            Endpoints = $"http://127.0.0.1:{ServiceProcess.FreePort()}",
            RetryTimeout = TimeSpan.FromSeconds(1),
            RequestTimeout = TimeSpan.FromMilliseconds(300),
        }), NullLogger<EtcdConnection>.Instance);
        var error = await Assert.ThrowsAsync<BrokerUnavailableException>(() => new EtcdKeyValueStore(dead).GetAsync("/x", CancellationToken.None));
        Assert.Contains("etcd is unavailable: unreachable at http://127.0.0.1:", error.Message, StringComparison.Ordinal);
    }
}

[CollectionDefinition("etcd")]
public sealed class EtcdCollection : ICollectionFixture<EtcdFixture>;
