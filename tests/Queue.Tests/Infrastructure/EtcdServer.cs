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
    private readonly TestCertificates? tls;

    private EtcdServer(int count, int? firstClientPort, TestCertificates? tls)
    {
        this.tls = tls;
        members = new Member[count];
        for (var i = 0; i < count; i++)
        {
            members[i] = new Member($"n{i}", i == 0 && firstClientPort is { } port ? port : ServiceProcess.FreePort(), ServiceProcess.FreePort(), tls is null ? "http" : "https");
        }
    }

    /// <summary>Client URLs, comma-separated, for <c>Queue:Etcd:Endpoints</c>.</summary>
    public string Endpoints => string.Join(",", members.Select(m => m.ClientUrl));

    public IReadOnlyList<string> MemberUrls => members.Select(m => m.ClientUrl).ToList();

    /// <summary>
    /// Starts the members; with <paramref name="tls"/>, clients reach them over https only and must
    /// present a certificate signed by the same CA (<c>--client-cert-auth</c>).
    /// </summary>
    public static async Task<EtcdServer> StartAsync(int memberCount = 1, int? clientPort = null, TestCertificates? tls = null)
    {
        var binary = OsProcess.Which("etcd") ?? throw new InvalidOperationException("etcd is not installed: run scripts/install-servers.sh.");
        var server = new EtcdServer(memberCount, clientPort, tls);
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

    /// <summary>
    /// Turns on etcd's authentication: a root user, and <paramref name="user"/> with a role that may
    /// read and write only under <c>/queue/</c> (what the engine needs, elections and leases included).
    /// </summary>
    public async Task EnableAuthAsync(string user, string password)
    {
        var root = "root-" + Guid.NewGuid().ToString("N")[..12];
        foreach (var command in new[]
        {
            $"user add root:{root} --interactive=false",
            "role add queue",
            "role grant-permission queue --prefix=true readwrite /queue/",
            $"user add {user}:{password} --interactive=false",
            $"user grant-role {user} queue",
            "auth enable",
        })
        {
            await EtcdctlAsync(command);
        }
    }

    /// <summary>Runs etcdctl (API v3) against the members, over TLS with the client certificate when the server has one.</summary>
    public async Task<string> EtcdctlAsync(string arguments)
    {
        var etcdctl = OsProcess.Which("etcdctl") ?? throw new InvalidOperationException("etcdctl is not installed: run scripts/install-servers.sh.");
        var security = tls is null ? "" : $" --cacert {tls.CaFile} --cert {tls.ClientCertificateFile} --key {tls.ClientKeyFile}";
        var (exit, output) = await OsProcess.BashAsync($"{etcdctl} --endpoints {Endpoints}{security} {arguments}", Path.GetTempPath(), TimeSpan.FromSeconds(30),
            new Dictionary<string, string> { ["ETCDCTL_API"] = "3" });
        Assert.True(exit == 0, $"etcdctl {arguments}: {output}");
        return output;
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
        if (tls is not null)
        {
            foreach (var arg in new[] { "--cert-file", tls.ServerCertificateFile, "--key-file", tls.ServerKeyFile, "--trusted-ca-file", tls.CaFile, "--client-cert-auth" })
            {
                info.ArgumentList.Add(arg);
            }
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
        if (tls is not null)
        {
            await WaitReadyOverTlsAsync(timeout);
            return;
        }
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

    /// <summary>A write through etcdctl (which has the client certificate) proves a leader and a quorum.</summary>
    private async Task WaitReadyOverTlsAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        var etcdctl = OsProcess.Which("etcdctl") ?? throw new InvalidOperationException("etcdctl is not installed: run scripts/install-servers.sh.");
        while (true)
        {
            var (exit, output) = await OsProcess.BashAsync(
                $"{etcdctl} --endpoints {Endpoints} --cacert {tls!.CaFile} --cert {tls.ClientCertificateFile} --key {tls.ClientKeyFile} --command-timeout=1s put ready 1",
                Path.GetTempPath(), TimeSpan.FromSeconds(10), new Dictionary<string, string> { ["ETCDCTL_API"] = "3" });
            if (exit == 0)
            {
                return;
            }
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"etcd did not become ready over TLS: {output}\n{Log(0)}");
            }
            await Task.Delay(200);
        }
    }

    private sealed class Member(string name, int clientPort, int peerPort, string scheme)
    {
        public string Name { get; } = name;
        public string ClientUrl { get; } = $"{scheme}://127.0.0.1:{clientPort}";
        public string PeerUrl { get; } = $"http://127.0.0.1:{peerPort}";
        public Process? Process { get; set; }
        public BoundedLog Output { get; } = new(200_000);
    }
}
