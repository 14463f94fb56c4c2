using System.Diagnostics;
using System.Text;

namespace Queue.Tests.Infrastructure;

/// <summary>
/// A real etcd (Debian's etcd-server) of one or three members on 127.0.0.1, with fresh ports and a
/// temp data folder; disposing ends exactly the processes it started.
/// </summary>
public sealed class EtcdServer : IAsyncDisposable
{
    private readonly string folder = Path.Combine(Path.GetTempPath(), "queue-etcd", Guid.NewGuid().ToString("N"));
    private readonly Member[] members;

    private EtcdServer(int count, int? firstClientPort)
    {
        members = new Member[count];
        for (var i = 0; i < count; i++)
        {
            members[i] = new Member($"n{i}", i == 0 && firstClientPort is { } port ? port : ServiceProcess.FreePort(), ServiceProcess.FreePort());
        }
    }

    /// <summary>Client URLs, comma-separated, for <c>Queue:Etcd:Endpoints</c>.</summary>
    public string Endpoints => string.Join(",", members.Select(m => m.ClientUrl));

    public IReadOnlyList<string> MemberUrls => members.Select(m => m.ClientUrl).ToList();

    public static async Task<EtcdServer> StartAsync(int memberCount = 1, int? clientPort = null)
    {
        var binary = OsProcess.Which("etcd") ?? throw new InvalidOperationException("etcd is not installed: run scripts/install-servers.sh.");
        var server = new EtcdServer(memberCount, clientPort);
        var cluster = string.Join(",", server.members.Select(m => $"{m.Name}={m.PeerUrl}"));
        foreach (var member in server.members)
        {
            server.Start(binary, member, cluster);
        }
        await server.WaitReadyAsync(TimeSpan.FromSeconds(20));
        return server;
    }

    /// <summary>Kills one member with SIGKILL.</summary>
    public void KillMember(int index)
    {
        var process = members[index].Process!;
        process.Kill();
        process.WaitForExit(5000);
    }

    /// <summary>Sends a signal (STOP, CONT) to one member.</summary>
    public void SignalMember(int index, string name) => OsProcess.Signal(members[index].Process!.Id, name);

    /// <summary>The index of the member that leads the raft group now, from each member's own status.</summary>
    public async Task<int> LeaderIndexAsync()
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        for (var i = 0; i < members.Length; i++)
        {
            if (members[i].Process is not { HasExited: false })
            {
                continue;
            }
            var response = await http.PostAsync($"{members[i].ClientUrl}/v3/maintenance/status", new StringContent("{}", Encoding.UTF8, "application/json"));
            using var status = System.Text.Json.JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            if (status.RootElement.GetProperty("header").GetProperty("member_id").GetString() == status.RootElement.GetProperty("leader").GetString())
            {
                return i;
            }
        }
        throw new InvalidOperationException("No etcd member says it leads.");
    }

    /// <summary>Restarts a member that was killed (same ports and data).</summary>
    public async Task RestartMemberAsync(int index)
    {
        var cluster = string.Join(",", members.Select(m => $"{m.Name}={m.PeerUrl}"));
        Start(OsProcess.Which("etcd")!, members[index], cluster);
        await WaitReadyAsync(TimeSpan.FromSeconds(20));
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var member in members)
        {
            if (member.Process is { HasExited: false } process)
            {
                process.Kill();
                await process.WaitForExitAsync();
            }
            member.Process?.Dispose();
        }
        try
        {
            Directory.Delete(folder, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    public string Log(int index) => members[index].Output.ToString();

    private void Start(string binary, Member member, string cluster)
    {
        var info = new ProcessStartInfo(binary) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var arg in new[]
        {
            "--name", member.Name, "--data-dir", Path.Combine(folder, member.Name),
            "--listen-client-urls", member.ClientUrl, "--advertise-client-urls", member.ClientUrl,
            "--listen-peer-urls", member.PeerUrl, "--initial-advertise-peer-urls", member.PeerUrl,
            "--initial-cluster", cluster, "--initial-cluster-state", "new",
            "--heartbeat-interval", "50", "--election-timeout", "500",
        })
        {
            info.ArgumentList.Add(arg);
        }
        var process = Process.Start(info)!;
        process.ErrorDataReceived += (_, e) => member.Output.Append(e.Data);
        process.OutputDataReceived += (_, e) => member.Output.Append(e.Data);
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        member.Process = process;
    }

    private async Task WaitReadyAsync(TimeSpan timeout)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(1) };
        var deadline = DateTime.UtcNow + timeout;
        foreach (var member in members.Where(m => m.Process is { HasExited: false }))
        {
            while (true)
            {
                try
                {
                    // A write through this member proves the cluster has a leader and a quorum.
                    var response = await http.PostAsync($"{member.ClientUrl}/v3/kv/put", new StringContent("{\"key\":\"cmVhZHk=\",\"value\":\"MQ==\"}", Encoding.UTF8, "application/json"));
                    if (response.IsSuccessStatusCode)
                    {
                        break;
                    }
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
                {
                }
                if (DateTime.UtcNow > deadline)
                {
                    throw new TimeoutException($"etcd member {member.Name} did not become ready:\n{Log(Array.IndexOf(members, member))}");
                }
                await Task.Delay(100);
            }
        }
    }

    private sealed class Member(string name, int clientPort, int peerPort)
    {
        public string Name { get; } = name;
        public string ClientUrl { get; } = $"http://127.0.0.1:{clientPort}";
        public string PeerUrl { get; } = $"http://127.0.0.1:{peerPort}";
        public Process? Process { get; set; }
        public BoundedLog Output { get; } = new(200_000);
    }
}
