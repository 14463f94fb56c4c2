using System.Net;
using System.Text;
using System.Xml;

namespace Queue.ServiceBusEndpoint;

/// <summary>
/// The administration API's queue operations the engine and its tests use: <c>GET /{queue}</c>
/// (<c>GetQueueAsync</c>, <c>GetQueueRuntimePropertiesAsync</c>) answered with the queue's ATOM entry (lock
/// duration, max delivery count, message counts), <c>PUT /{queue}</c> without <c>If-Match</c>
/// (<c>CreateQueueAsync</c>: lock duration and max delivery count; sessions, duplicate detection and
/// partitioning refused) and <c>DELETE /{queue}</c>, SAS-authorised with the Manage right. Plain HTTP on its
/// own port, as the official emulator serves it; anything else is 501.
/// </summary>
internal sealed class AdministrationApi : IDisposable
{
    private const string Atom = "http://www.w3.org/2005/Atom";
    private const string Connect = "http://schemas.microsoft.com/netservices/2010/10/servicebus/connect";
    private readonly HttpListener listener = new();
    private readonly Broker broker;
    private readonly Action<string, QueueSettings> create;
    private readonly IReadOnlyList<AccessPolicy> policies;
    private readonly Action<string> log;
    private readonly CancellationTokenSource stopping = new();
    private Task? serving;

    public AdministrationApi(int port, Broker broker, Action<string, QueueSettings> create, IReadOnlyList<AccessPolicy> policies, Action<string> log)
    {
        this.broker = broker;
        this.create = create;
        this.policies = policies;
        this.log = log;
        listener.Prefixes.Add($"http://127.0.0.1:{port}/");
    }

    public void Start()
    {
        listener.Start();
        serving = Task.Run(ServeAsync);
    }

    private async Task ServeAsync()
    {
        while (!stopping.IsCancellationRequested)
        {
            HttpListenerContext context;
            try
            {
                context = await listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }
            try
            {
                Answer(context);
            }
            catch (Exception e) when (e is HttpListenerException or IOException)
            {
                // The client went away.
            }
        }
    }

    private void Answer(HttpListenerContext context)
    {
        var request = context.Request;
        var response = context.Response;
        var name = Uri.UnescapeDataString(request.Url!.AbsolutePath.Trim('/'));
        if (request.HttpMethod is not ("GET" or "PUT" or "DELETE") || name.Length == 0 || name.Contains('/', StringComparison.Ordinal)
            || request.QueryString["api-version"] is null || request.Headers["If-Match"] is not null)
        {
            log($"administration: refused {request.HttpMethod} {request.Url.PathAndQuery}: not implemented");
            Reply(response, 501, Error(501, $"The test endpoint implements GET, PUT (create) and DELETE of a queue only, not {request.HttpMethod} {request.Url.AbsolutePath}."));
            return;
        }
        var (policy, _) = SasTokens.Check(request.Headers["Authorization"], $"https://{request.Url.Host}/{name}", policies);
        if (policy is null || !policy.Rights.HasFlag(AccessRights.Manage))
        {
            Reply(response, 401, Error(401, "Unauthorized: Manage claim is required for this operation."));
            return;
        }
        if (request.HttpMethod == "PUT")
        {
            if (broker.Describe(name) is not null)
            {
                Reply(response, 409, Error(409, $"The messaging entity '{name}' already exists."));
                return;
            }
            var (wanted, problem) = ReadDescription(request);
            if (wanted is null)
            {
                log($"administration: refused to create '{name}': {problem}");
                Reply(response, 501, Error(501, problem!));
                return;
            }
            create(name, wanted);
            response.StatusCode = 201;
        }
        else if (request.HttpMethod == "DELETE")
        {
            var deleted = broker.DeleteQueue(name);
            Reply(response, deleted ? 200 : 404, deleted ? "" : Error(404, $"The messaging entity '{name}' could not be found."));
            return;
        }
        if (broker.Describe(name) is not { } queue)
        {
            Reply(response, 404, Error(404, $"The messaging entity '{name}' could not be found."));
            return;
        }
        var (settings, active, dead) = queue;
        var entry = new StringBuilder();
        using (var writer = XmlWriter.Create(entry, new XmlWriterSettings { OmitXmlDeclaration = true }))
        {
            writer.WriteStartElement("entry", Atom);
            writer.WriteStartElement("title", Atom);
            writer.WriteAttributeString("type", "text");
            writer.WriteString(name);
            writer.WriteEndElement();
            writer.WriteStartElement("content", Atom);
            writer.WriteAttributeString("type", "application/xml");
            writer.WriteStartElement("QueueDescription", Connect);
            writer.WriteElementString("LockDuration", Connect, XmlConvert.ToString(settings.LockDuration));
            writer.WriteElementString("RequiresSession", Connect, "false");
            writer.WriteElementString("DeadLetteringOnMessageExpiration", Connect, "false");
            writer.WriteElementString("MaxDeliveryCount", Connect, settings.MaxDeliveryCount.ToString(System.Globalization.CultureInfo.InvariantCulture));
            writer.WriteElementString("MessageCount", Connect, (active + dead).ToString(System.Globalization.CultureInfo.InvariantCulture));
            writer.WriteStartElement("CountDetails", Connect);
            writer.WriteElementString("ActiveMessageCount", Connect, active.ToString(System.Globalization.CultureInfo.InvariantCulture));
            writer.WriteElementString("DeadLetterMessageCount", Connect, dead.ToString(System.Globalization.CultureInfo.InvariantCulture));
            writer.WriteEndElement();
            writer.WriteElementString("Status", Connect, "Active");
            writer.WriteEndElement();
            writer.WriteEndElement();
            writer.WriteEndElement();
        }
        Reply(response, response.StatusCode == 201 ? 201 : 200, entry.ToString(), "application/atom+xml;type=entry;charset=utf-8");
    }

    /// <summary>The settings of a queue to create, from the request's QueueDescription; null and why for what is not implemented.</summary>
    private static (QueueSettings? Settings, string? Problem) ReadDescription(HttpListenerRequest request)
    {
        var document = new XmlDocument { XmlResolver = null };
        try
        {
            using var reader = XmlReader.Create(request.InputStream, new XmlReaderSettings { DtdProcessing = DtdProcessing.Prohibit });
            document.Load(reader);
        }
        catch (XmlException e)
        {
            return (null, $"The body is not an ATOM entry: {e.Message}");
        }
        var description = document.GetElementsByTagName("QueueDescription", Connect);
        if (description.Count != 1)
        {
            return (null, "The body holds no QueueDescription.");
        }
        var lockDuration = TimeSpan.FromMinutes(1);
        var maxDeliveryCount = 10;
        foreach (XmlNode field in description[0]!.ChildNodes)
        {
            var value = field.InnerText;
            switch (field.LocalName)
            {
                case "LockDuration": lockDuration = XmlConvert.ToTimeSpan(value); break;
                case "MaxDeliveryCount": maxDeliveryCount = int.Parse(value, System.Globalization.CultureInfo.InvariantCulture); break;
                case "RequiresSession" or "RequiresDuplicateDetection" or "EnablePartitioning" or "EnableExpress" when value == "true":
                    return (null, $"{field.LocalName} is not implemented.");
                case "ForwardTo" or "ForwardDeadLetteredMessagesTo" when value.Length > 0:
                    return (null, $"{field.LocalName} is not implemented.");
                default: break; // sizes, TTLs, statuses: kept by a real namespace, not needed here
            }
        }
        return (new QueueSettings(lockDuration, maxDeliveryCount), null);
    }

    private static string Error(int code, string detail) =>
        $"<Error><Code>{code}</Code><Detail>{SecurityElementEscape(detail)}</Detail></Error>";

    private static string SecurityElementEscape(string text) => System.Security.SecurityElement.Escape(text) ?? "";

    private static void Reply(HttpListenerResponse response, int status, string body, string type = "application/xml; charset=utf-8")
    {
        var bytes = Encoding.UTF8.GetBytes(body);
        response.StatusCode = status;
        response.ContentType = type;
        response.ContentLength64 = bytes.Length;
        response.OutputStream.Write(bytes);
        response.Close();
    }

    public void Dispose()
    {
        stopping.Cancel();
        listener.Close();
        serving?.Wait(TimeSpan.FromSeconds(5));
        stopping.Dispose();
    }
}
