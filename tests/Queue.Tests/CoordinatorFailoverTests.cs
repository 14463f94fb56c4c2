using System.Net.Http.Json;
using Queue.Coordinator;
using Queue.Tests.Infrastructure;

namespace Queue.Tests;

/// <summary>Coordinator processes electing a leader through a real etcd, and what happens when the leader dies, stops or pauses.</summary>
[Collection("etcd")]
public sealed class CoordinatorFailoverTests(EtcdFixture etcd) : IAsyncLifetime
{
    private readonly List<ServiceProcess> started = [];
    private readonly string folder = Path.Combine(Path.GetTempPath(), "queue-coord", Guid.NewGuid().ToString("N"));
    private readonly HttpClient http = new() { Timeout = TimeSpan.FromMilliseconds(700) };

    public Task InitializeAsync()
    {
        Directory.CreateDirectory(folder);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        // Stop gracefully so each resigns: a killed candidate's key would hold up the next test until its lease expires.
        foreach (var process in started.Where(p => !p.HasExited))
        {
            process.Signal("CONT");
            process.Signal("TERM");
        }
        foreach (var process in started)
        {
            await process.WaitForExitAsync(TimeSpan.FromSeconds(10));
            await process.DisposeAsync();
        }
        http.Dispose();
        Directory.Delete(folder, recursive: true);
    }

    private async Task<ServiceProcess[]> StartCoordinatorsAsync(int count, string endpoints, string leaseTtl = "00:00:02", bool waitHealthy = true)
    {
        var processes = new ServiceProcess[count];
        for (var i = 0; i < count; i++)
        {
            var environment = new Dictionary<string, string>
            {
                ["Queue__Adapters__Coordination"] = "etcd",
                ["Queue__Adapters__DataPath"] = Path.Combine(folder, "data"),
                ["Queue__Etcd__Endpoints"] = endpoints,
                ["Queue__Etcd__LeaseTtl"] = leaseTtl,
                ["Queue__Etcd__RequestTimeout"] = "00:00:01",
                ["Queue__Etcd__RetryTimeout"] = "00:00:02",
                ["Queue__Etcd__CampaignPollInterval"] = "00:00:00.100",
                ["Queue__Coordinator__CandidateId"] = $"coordinator-{i}-{Guid.NewGuid():N}"[..24],
                ["Queue__Coordinator__RetryDelay"] = "00:00:00.300",
            };
            processes[i] = await ServiceProcess.StartAsync("Queue.Coordinator", folder, environment);
            started.Add(processes[i]);
        }
        return processes;
    }

    private async Task<CoordinatorStatus?> StatusAsync(ServiceProcess process)
    {
        if (process.HasExited)
        {
            return null;
        }
        try
        {
            return await http.GetFromJsonAsync(new Uri(process.BaseAddress, "/coordinator"), CoordinatorJsonContext.Default.CoordinatorStatus);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return null; // stopped, paused or dead
        }
    }

    /// <summary>Waits until exactly one of <paramref name="candidates"/> reports that it leads; returns it.</summary>
    private async Task<ServiceProcess> WaitForOneLeaderAsync(IReadOnlyList<ServiceProcess> candidates, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            var leaders = new List<ServiceProcess>();
            foreach (var candidate in candidates)
            {
                if ((await StatusAsync(candidate))?.Leader == true)
                {
                    leaders.Add(candidate);
                }
            }
            Assert.True(leaders.Count <= 1, "Two coordinators lead at once.");
            if (leaders.Count == 1)
            {
                return leaders[0];
            }
            await Task.Delay(100);
        }
        throw new TimeoutException($"No coordinator led within {timeout}.\n{string.Join("\n---\n", candidates.Select(c => c.Output))}");
    }

    [Fact]
    public async Task ExactlyOneOfThreeLeadsAndAnotherLeadsSoonAfterTheLeaderIsKilled()
    {
        var coordinators = await StartCoordinatorsAsync(3, etcd.Server.Endpoints);
        var leader = await WaitForOneLeaderAsync(coordinators, TimeSpan.FromSeconds(15));
        for (var i = 0; i < 5; i++)
        {
            Assert.Same(leader, await WaitForOneLeaderAsync(coordinators, TimeSpan.FromSeconds(2)));
            await Task.Delay(200);
        }

        leader.Kill(); // SIGKILL: no resignation, the lease (2 s) must expire
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var next = await WaitForOneLeaderAsync(coordinators.Where(c => c != leader).ToList(), TimeSpan.FromSeconds(10));
        Assert.NotSame(leader, next);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(8), $"Failover took {watch.Elapsed}.");
    }

    [Fact]
    public async Task SigtermResignsSoAnotherLeadsAtOnce()
    {
        // A long lease: only resignation, not expiry, can hand over quickly.
        var coordinators = await StartCoordinatorsAsync(2, etcd.Server.Endpoints, leaseTtl: "00:00:30");
        var leader = await WaitForOneLeaderAsync(coordinators, TimeSpan.FromSeconds(15));
        var watch = System.Diagnostics.Stopwatch.StartNew();
        leader.Signal("TERM");
        var next = await WaitForOneLeaderAsync(coordinators.Where(c => c != leader).ToList(), TimeSpan.FromSeconds(10));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(3), $"Handover after SIGTERM took {watch.Elapsed}.");
        Assert.True(await leader.WaitForExitAsync(TimeSpan.FromSeconds(10)));
        Assert.Contains("resigned", leader.Output, StringComparison.Ordinal);
        Assert.NotSame(leader, next);
    }

    [Fact]
    public async Task PausedLeaderWhoseLeaseExpiredStepsDownWhenItResumes()
    {
        var coordinators = await StartCoordinatorsAsync(2, etcd.Server.Endpoints);
        var leader = await WaitForOneLeaderAsync(coordinators, TimeSpan.FromSeconds(15));
        var epoch = (await StatusAsync(leader))!.Epoch;
        leader.Signal("STOP");
        var other = coordinators.Single(c => c != leader);
        Assert.Same(other, await WaitForOneLeaderAsync([other], TimeSpan.FromSeconds(10)));
        Assert.True((await StatusAsync(other))!.Epoch > epoch);

        leader.Signal("CONT");
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(5);
        while ((await StatusAsync(leader))?.Leader != false)
        {
            Assert.True(DateTime.UtcNow < deadline, "The resumed leader did not step down.\n" + leader.Output);
            await Task.Delay(100);
        }
        Assert.Same(other, await WaitForOneLeaderAsync(coordinators, TimeSpan.FromSeconds(2)));
    }

    [Fact]
    public async Task CoordinatorWaitsForEtcdAtStartAndLeadsOnceItIsUp()
    {
        var port = ServiceProcess.FreePort();
        var coordinators = await StartCoordinatorsAsync(1, $"http://127.0.0.1:{port}");
        await Task.Delay(3000);
        Assert.False(coordinators[0].HasExited, coordinators[0].Output);
        Assert.Contains("etcd is unavailable: unreachable", coordinators[0].Output, StringComparison.Ordinal);
        Assert.False((await StatusAsync(coordinators[0]))!.Leader);

        await using var late = await EtcdServer.StartAsync(clientPort: port);
        Assert.Same(coordinators[0], await WaitForOneLeaderAsync(coordinators, TimeSpan.FromSeconds(15)));
    }

    [Fact]
    public async Task ElectionSurvivesTheLossOfOneMemberOfAThreeMemberCluster()
    {
        await using var cluster = await EtcdServer.StartAsync(memberCount: 3);
        var coordinators = await StartCoordinatorsAsync(2, cluster.Endpoints);
        var leader = await WaitForOneLeaderAsync(coordinators, TimeSpan.FromSeconds(15));

        cluster.KillMember(0); // the first endpoint every client tries
        await Task.Delay(1500);
        Assert.Same(leader, await WaitForOneLeaderAsync(coordinators, TimeSpan.FromSeconds(5)));

        leader.Kill();
        var other = coordinators.Single(c => c != leader);
        Assert.Same(other, await WaitForOneLeaderAsync([other], TimeSpan.FromSeconds(12)));
    }
}
